"""The auditor's challenge: sampling, and honest answers passing (the lies: test_audit_tamper)."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairgate import metering
from fairgate.metering.audit import (
    MAX_SAMPLES,
    AuditResponse,
    Challenge,
    answer_challenge,
    sample_positions,
)
from fairgate.metering.audit_check import Reason
from fairgate.metering.commitment import HiddenCommitter
from tests.metering.audit_helpers import (
    NONCE,
    REPO,
    RID,
    audit,
    committed,
    honest,
    reasons,
    record_for,
    retokenize,
    sign,
)

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
