"""The auditor's challenge: sampling, the gateway's answer, and every check that catches a lie."""

from __future__ import annotations

import doctest
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairgate import metering
from fairgate.metering.audit import (
    MAX_SAMPLES,
    AuditResponse,
    Challenge,
    OpenedLeaf,
    answer_challenge,
    parse_receipt,
    sample_positions,
)
from fairgate.metering.audit_check import (
    Reason,
    Severity,
    TokenPolicy,
    verify_audit,
)
from fairgate.metering.commitment import Commitment, HiddenCommitter, Opening
from fairgate.metering.record import (
    GENESIS_HASH,
    LedgerEntry,
    Receipt,
    sign_record,
    unsigned_record,
)
from fairgate.metering.signing import SigningKey
from fairgate.metering.usage import Usage

REPO = Path(__file__).resolve().parents[2]
KEY = SigningKey.generate()
NONCE = bytes(range(16))
RID = "req_audit"


def token_text(i: int) -> str:
    return f" t{i}"


def retokenize(text: str) -> list[int]:
    """The toy tokenizer the helpers' tokens come from: `` t<i>`` is token ``100 + i``."""
    return [100 + int(n) for n in re.findall(r" t(\d+)", text)]


def committed(n: int, block_size: int = 4, salt: bytes = bytes(32)) -> Opening:
    committer = HiddenCommitter(block_size=block_size, salt=salt)
    for i in range(n):
        committer.add([100 + i], token_text(i))
    return committer.opening()


def sign(body: dict[str, Any], key: SigningKey = KEY) -> dict[str, Any]:
    """What a gateway holding ``key`` can sign, honest or not."""
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return sign_record({**unsigned, "key_id": key.key_id}, key)


def record_for(opening: Opening, request_id: str = RID) -> dict[str, Any]:
    commitment = opening.commitment() if opening.leaves else Commitment.empty()
    entry = LedgerEntry(
        request_id=request_id,
        tenant="acme",
        model="m",
        replica="r0",
        status="ok",
        status_code=200,
        started_at=1_700_000_000.0,
        finished_at=1_700_000_001.0,
        usage=Usage(
            prompt_tokens=5, completion_tokens=opening.leaves + 3, reasoning_tokens=opening.leaves
        ),
        commitment=commitment,
        opening=opening if opening.leaves else None,
    )
    body = unsigned_record(entry, chain="default", seq=7, prev_hash=GENESIS_HASH, key_id=KEY.key_id)
    return sign_record(body, KEY)


def audit(
    record: dict[str, Any],
    response: AuditResponse | dict[str, Any],
    challenge: Challenge,
    **kwargs: Any,
) -> metering.audit_check.AuditReport:
    return verify_audit(
        Receipt.from_record(record), challenge, response, [KEY.public_key], **kwargs
    )


def reasons(report: metering.audit_check.AuditReport) -> set[Reason]:
    return {f.reason for f in report.findings}


def honest(
    n: int, block_size: int = 4, samples: int = 8, nonce: bytes = NONCE
) -> tuple[Opening, dict[str, Any], Challenge, AuditResponse]:
    """An honest gateway's commitment, signed record, a challenge and its answer."""
    opening = committed(n, block_size)
    record = record_for(opening)
    challenge = Challenge(RID, nonce, samples)
    return opening, record, challenge, answer_challenge(record, opening, challenge)


def with_opening(response: AuditResponse, index: int, **changes: Any) -> AuditResponse:
    opened = response.openings[index]
    leaf = changes.pop("leaf", opened.leaf)
    new = OpenedLeaf(leaf, replace(opened.opening, **changes))
    openings = list(response.openings)
    openings[index] = new
    return replace(response, openings=tuple(openings))


# -- the sample ---------------------------------------------------------------------------------


def test_docstring_examples() -> None:
    assert doctest.testmod(metering.audit).failed == 0


@settings(max_examples=200, deadline=None)
@given(
    nonce=st.binary(min_size=16, max_size=64),
    leaves=st.integers(0, 5000),
    samples=st.integers(1, MAX_SAMPLES),
    request_id=st.text(min_size=1, max_size=40),
)
def test_sample_is_distinct_sorted_bounded_and_holds_the_last(
    nonce: bytes, leaves: int, samples: int, request_id: str
) -> None:
    positions = sample_positions(nonce, request_id, leaves, samples)
    assert positions == sample_positions(nonce, request_id, leaves, samples)
    assert list(positions) == sorted(set(positions))
    assert len(positions) == min(samples, leaves)
    assert all(0 <= p < leaves for p in positions)
    if leaves:
        assert positions[-1] == leaves - 1


def test_sample_is_uniform_over_the_other_positions() -> None:
    counts: Counter[int] = Counter()
    for i in range(3000):
        counts.update(sample_positions(i.to_bytes(16, "big"), RID, 10, 3))
    assert counts[9] == 3000
    expected = 3000 * 2 / 9  # two draws among positions 0..8 per challenge
    assert all(0.85 * expected < counts[p] < 1.15 * expected for p in range(9)), counts


def test_sample_depends_on_nonce_request_and_count() -> None:
    base = sample_positions(NONCE, RID, 1000, 8)
    assert sample_positions(bytes(16), RID, 1000, 8) != base
    assert sample_positions(NONCE, "req_other", 1000, 8) != base
    assert sample_positions(NONCE, RID, 1001, 8) != base


def test_challenge_validates_nonce_and_samples() -> None:
    for bad in (
        lambda: Challenge(RID, bytes(15)),
        lambda: Challenge(RID, bytes(65)),
        lambda: Challenge(RID, NONCE, 0),
        lambda: Challenge(RID, NONCE, MAX_SAMPLES + 1),
        lambda: Challenge("", NONCE),
    ):
        with pytest.raises(ValueError):
            bad()
    assert Challenge(RID, NONCE, 3).to_dict() == {
        "request_id": RID,
        "nonce": NONCE.hex(),
        "samples": 3,
    }


# -- honest answers pass ------------------------------------------------------------------------


def test_honest_audits_pass_for_every_size_up_to_200() -> None:
    for n in range(1, 201):
        block_size = 1 + n % 7 if n % 5 else 16
        _, record, challenge, response = honest(n, block_size, samples=1 + n % 10)
        report = audit(record, response, challenge, retokenize=retokenize)
        assert report.ok and not report.findings, (n, report.findings)
        assert report.verified == report.positions == challenge.positions(n)
        assert report.positions[-1] == n - 1
        assert report.blocks_retokenized == len({p // block_size for p in report.positions})


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 400),
    block_size=st.integers(1, 20),
    samples=st.integers(1, 32),
    nonce=st.binary(min_size=16, max_size=64),
)
def test_honest_audits_pass_through_json(
    n: int, block_size: int, samples: int, nonce: bytes
) -> None:
    _, record, challenge, response = honest(n, block_size, samples, nonce)
    wire = json.loads(json.dumps(response.to_dict()))
    assert AuditResponse.from_dict(wire) == response
    report = audit(record, wire, challenge, retokenize=retokenize)
    assert report.ok and not report.findings, report.findings


def test_zero_hidden_tokens_open_nothing_and_still_check_the_record() -> None:
    opening = committed(0)
    record = record_for(opening)
    challenge = Challenge(RID, NONCE)
    response = answer_challenge(record, None, challenge)
    assert response.openings == () and response.block_size is None
    report = audit(record, response.to_dict(), challenge)
    assert report.ok and report.positions == () and report.summary().startswith("OK")
    forged = sign({**record, "commitment": {**record["commitment"], "root": "ab" * 32}})
    assert Reason.COUNT_UNPROVEN in reasons(
        audit(forged, answer_challenge(forged, None, challenge), challenge)
    )


def test_the_answer_holds_only_the_sampled_blocks() -> None:
    committer = HiddenCommitter(block_size=4, salt=bytes(32))
    for i in range(64):
        committer.add([100 + i], f" <b{i // 4}>")
    opening = committer.opening()
    record = record_for(opening)
    challenge = Challenge(RID, NONCE, 3)
    text = json.dumps(answer_challenge(record, opening, challenge).to_dict())
    sampled = {p // 4 for p in challenge.positions(64)}
    for block in range(16):
        assert (f"<b{block}>" in text) == (block in sampled), block
    assert opening.salt.hex() in text  # v1 leaves share one salt per request (see docstring)


def test_answering_needs_the_matching_opening() -> None:
    opening = committed(10)
    record = record_for(opening)
    with pytest.raises(ValueError):
        answer_challenge(record, None, Challenge(RID, NONCE))
    with pytest.raises(ValueError):
        answer_challenge(record, committed(9), Challenge(RID, NONCE))
    with pytest.raises(ValueError):
        answer_challenge(record, opening, Challenge("req_other", NONCE))


# -- every lie has a name -----------------------------------------------------------------------


def test_a_wrong_token_id_in_a_block_is_a_block_mismatch() -> None:
    _, record, challenge, response = honest(40, block_size=4)
    o = response.openings[0].opening
    ids = list(o.block_token_ids)
    other = (o.position - o.block_start + 1) % len(ids)  # another token of the same block
    ids[other] += 1
    report = audit(record, with_opening(response, 0, block_token_ids=tuple(ids)), challenge)
    assert reasons(report) == {Reason.BLOCK_MISMATCH}
    assert report.findings[0].position == o.position and not report.ok


def test_a_token_id_not_at_its_place_is_a_token_mismatch() -> None:
    _, record, challenge, response = honest(40)
    o = response.openings[1].opening
    report = audit(record, with_opening(response, 1, token_id=o.token_id + 1), challenge)
    assert reasons(report) == {Reason.TOKEN_MISMATCH}


def test_changed_block_text_is_a_block_mismatch() -> None:
    _, record, challenge, response = honest(40)
    o = response.openings[0].opening
    report = audit(record, with_opening(response, 0, block_text=o.block_text + " extra"), challenge)
    assert reasons(report) == {Reason.BLOCK_MISMATCH}


def test_a_changed_block_with_its_leaf_recomputed_fails_the_proof() -> None:
    from fairgate.metering.commitment import block_fingerprint, leaf_data
    from fairgate.metering.merkle import hash_leaf

    _, record, challenge, response = honest(40)
    o = response.openings[0].opening
    text = o.block_text.upper()
    leaf = hash_leaf(
        leaf_data(
            o.salt,
            o.position,
            o.token_id,
            block_fingerprint(o.block_start, o.block_token_ids, text),
        )
    )
    report = audit(record, with_opening(response, 0, block_text=text, leaf=leaf), challenge)
    assert reasons(report) == {Reason.BAD_PROOF}


def test_a_proof_from_a_different_tree_is_a_bad_proof() -> None:
    _, record, challenge, response = honest(40)
    other = committed(40, salt=bytes([1]) * 32)
    last = response.openings[-1].opening.position
    foreign = other.open_leaf(last).proof
    report = audit(
        record, with_opening(response, len(response.openings) - 1, proof=foreign), challenge
    )
    assert reasons(report) == {Reason.BAD_PROOF, Reason.COUNT_UNPROVEN}
    assert {f.position for f in report.findings if f.reason is Reason.BAD_PROOF} == {last}


def test_an_inflated_count_over_a_smaller_tree_is_caught_by_the_last_position() -> None:
    # The gateway hashed 5 tokens but signs a record billing 8 over the same root. A leaf in the
    # complete left subtree proves under both sizes, so sampling it alone shows nothing...
    real = committed(5, block_size=1)
    inflated = sign(
        {
            **record_for(real),
            "commitment": {**real.commitment().to_dict(), "leaves": 8},
            "usage": {
                **record_for(real)["usage"],
                "completion_tokens": 11,
                "completion_tokens_details": {"reasoning_tokens": 8},
            },
        }
    )
    from fairgate.metering.commitment import verify_leaf_opening

    verify_leaf_opening(Commitment(root=real.commitment().root, leaves=8), real.open_leaf(0))
    # ...but the last position (7) does not exist; the best forgery relabels the real last leaf.
    challenge = Challenge(RID, NONCE, 3)
    tree = real.tree()
    openings = []
    for p in challenge.positions(8):
        source = real.open_leaf(min(p, 4), tree)
        if p > 4:
            source = replace(source, position=p, block_start=p)
        openings.append(OpenedLeaf(tree.levels[0][min(p, 4)], source))
    forged = AuditResponse(RID, NONCE, 3, inflated, 1, tuple(openings))
    report = audit(inflated, forged, challenge)
    assert Reason.COUNT_UNPROVEN in reasons(report) and not report.ok
    assert 7 not in report.verified


def test_a_receipt_with_an_inflated_count_does_not_match_the_record() -> None:
    _, record, challenge, response = honest(20)
    receipt = replace(Receipt.from_record(record), leaves=25)
    report = verify_audit(receipt, challenge, response, [KEY.public_key])
    assert Reason.RECEIPT_MISMATCH in reasons(report) and not report.ok


def test_positions_not_derived_from_the_nonce_are_wrong_positions() -> None:
    opening, record, challenge, _ = honest(100, samples=4)
    chosen = answer_challenge(record, opening, Challenge(RID, bytes(16), 4))  # another nonce
    report = audit(record, chosen, challenge)
    assert Reason.WRONG_POSITIONS in reasons(report)
    assert report.verified == (99,)  # the last is in both samples, and still checks out


def test_leaving_out_the_last_position_is_wrong_positions_and_an_unproven_count() -> None:
    _, record, challenge, response = honest(50)
    dropped = replace(response, openings=response.openings[:-1])
    assert reasons(audit(record, dropped, challenge)) == {
        Reason.WRONG_POSITIONS,
        Reason.COUNT_UNPROVEN,
    }


def test_a_record_whose_signature_fails() -> None:
    _, record, challenge, response = honest(20)
    tampered = {**record, "tenant": "mallory"}
    report = audit(tampered, replace(response, record=tampered), challenge)
    assert reasons(report) == {Reason.BAD_SIGNATURE}


def test_a_record_signed_by_an_unpublished_key() -> None:
    _, record, challenge, response = honest(20)
    stranger = SigningKey.generate()
    forged = sign(record, stranger)
    report = verify_audit(
        Receipt.from_record(forged), challenge, replace(response, record=forged), [KEY.public_key]
    )
    assert reasons(report) == {Reason.UNKNOWN_KEY}


def test_billed_reasoning_tokens_other_than_the_leaves_are_a_count_mismatch() -> None:
    _, record, challenge, response = honest(20)
    usage = {**record["usage"], "completion_tokens_details": {"reasoning_tokens": 30}}
    overbilled = sign({**record, "usage": usage})
    report = audit(overbilled, replace(response, record=overbilled), challenge)
    assert reasons(report) == {Reason.COUNT_MISMATCH}


def test_blocks_that_do_not_fit_the_layout() -> None:
    _, record, challenge, response = honest(30, block_size=4)
    assert reasons(audit(record, replace(response, block_size=5), challenge)) >= {
        Reason.BLOCK_LAYOUT
    }
    assert reasons(audit(record, replace(response, block_size=None), challenge)) >= {
        Reason.BLOCK_LAYOUT
    }


def test_retokenize_mismatch_fails_exact_and_warns_under_report() -> None:
    _, record, challenge, response = honest(30)

    def off_by_one(text: str) -> list[int]:
        return [t + 1 for t in retokenize(text)]

    exact = audit(record, response, challenge, retokenize=off_by_one)
    assert reasons(exact) == {Reason.RETOKENIZE_MISMATCH} and not exact.ok
    lenient = audit(
        record, response, challenge, retokenize=off_by_one, token_policy=TokenPolicy.REPORT
    )
    assert lenient.ok and all(f.severity is Severity.WARN for f in lenient.findings)
    assert reasons(lenient) == {Reason.RETOKENIZE_MISMATCH}


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: None,
        lambda d: {**d, "openings": "none"},
        lambda d: {**d, "record": []},
        lambda d: {**d, "openings": [{**d["openings"][0], "proof": ["zz"]}]},
        lambda d: {**d, "openings": [{**d["openings"][0], "position": True}]},
        lambda d: {**d, "block_size": 0},
    ],
)
def test_malformed_answers_are_findings_not_exceptions(mangle: Any) -> None:
    _, record, challenge, response = honest(10)
    report = audit(record, mangle(response.to_dict()), challenge)
    assert reasons(report) == {Reason.MALFORMED} and not report.ok


def test_report_and_receipt_round_trip() -> None:
    _, record, challenge, response = honest(12)
    report = audit(record, response, challenge)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["positions"] == list(challenge.positions(12))
    receipt = Receipt.from_record(record)
    assert parse_receipt(receipt.to_dict()) == receipt
    for bad in ({}, {**receipt.to_dict(), "leaves": -1}, {**receipt.to_dict(), "root": "x"}, []):
        with pytest.raises(ValueError):
            parse_receipt(bad)  # type: ignore[arg-type]


def test_audit_is_pure() -> None:
    forbidden = ["asyncio", "http", "httpx", "fastapi", "starlette", "sqlite3", "prometheus_client"]
    code = (
        "import sys, metering.audit, metering.audit_check\n"
        f"print(' '.join(m for m in {forbidden!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == ""
