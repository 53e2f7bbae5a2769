"""Shared helpers of the audit tests: a toy committed request, its signed record, its answer."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from fairgate.metering.audit import AuditResponse, Challenge, OpenedLeaf, answer_challenge
from fairgate.metering.audit_check import AuditReport, Reason, verify_audit
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
) -> AuditReport:
    return verify_audit(
        Receipt.from_record(record), challenge, response, [KEY.public_key], **kwargs
    )


def reasons(report: AuditReport) -> set[Reason]:
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
