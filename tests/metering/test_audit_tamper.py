"""Every lie in an audit answer has a name: tampered blocks and proofs, wrong positions, a bad
record, a changed count, a wrong layout, a failed re-tokenization, malformed answers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fairgate.metering.audit import AuditResponse, Challenge, OpenedLeaf, answer_challenge
from fairgate.metering.audit_check import Reason, Severity, TokenPolicy, verify_audit
from fairgate.metering.commitment import Commitment
from fairgate.metering.record import Receipt
from fairgate.metering.signing import SigningKey
from tests.metering.audit_helpers import (
    KEY,
    NONCE,
    RID,
    audit,
    committed,
    honest,
    reasons,
    record_for,
    retokenize,
    sign,
    with_opening,
)


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
