"""Checking an audit answer: the auditor's side of :mod:`metering.audit`.

:func:`verify_audit` never raises on a bad answer: a bad answer is an expected outcome, so it
returns an :class:`AuditReport` listing every :class:`Finding`. Here: the signed record, the
sampled positions, the count and re-tokenization; the openings are checked in
:mod:`metering.audit_openings`, the report's types live in :mod:`metering.audit_report`.
Pure: hashing and data only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fairgate.metering import protocol
from fairgate.metering.audit import AuditResponse, Challenge
from fairgate.metering.audit_openings import check_block, check_opening, short
from fairgate.metering.audit_report import (
    AuditReport,
    Finding,
    Findings,
    Reason,
    Severity,
    TokenPolicy,
    VerifiedBlock,
)
from fairgate.metering.commitment import Commitment
from fairgate.metering.merkle import ALG, EMPTY_ROOT
from fairgate.metering.record import Receipt, verify_signature
from fairgate.metering.signing import PublicKey

__all__ = [
    "AuditReport",
    "Finding",
    "Reason",
    "Retokenize",
    "Severity",
    "TokenPolicy",
    "VerifiedBlock",
    "verify_audit",
]

_EMPTY_ROOT_HEX = EMPTY_ROOT.hex()
Retokenize = Callable[[str], Sequence[int]]


def verify_audit(
    receipt: Receipt,
    challenge: Challenge,
    response: AuditResponse | Mapping[str, Any],
    public_keys: Iterable[PublicKey],
    *,
    retokenize: Retokenize | None = None,
    token_policy: TokenPolicy = TokenPolicy.EXACT,
) -> AuditReport:
    """Check the gateway's answer to ``challenge`` against ``receipt``; see the module docstring.

    ``public_keys`` are the gateway's published keys (its JWKS); a record's ``key_id`` is matched
    against ids derived from these keys, never taken on trust.
    """
    if challenge.request_id != receipt.request_id:
        raise ValueError("the challenge is not for the receipt's request")
    positions = challenge.positions(receipt.leaves)
    report = Findings(receipt, positions)
    if not isinstance(response, AuditResponse):
        try:
            response = AuditResponse.from_dict(response)
        except (ValueError, TypeError) as exc:
            report.add(Reason.MALFORMED, f"answer: {exc}")
            return report.done()
    if response.nonce != challenge.nonce or response.request_id != challenge.request_id:
        report.add(Reason.MALFORMED, "the answer is for another challenge (nonce or request id)")
    signed = _check_record(report, receipt, response.record, {k.key_id: k for k in public_keys})
    if signed is not None and signed.protocol not in protocol.SUPPORTED:
        report.add(Reason.UNKNOWN_PROTOCOL, f"commitment protocol {signed.protocol} is unknown")
        return report.done()
    _check_positions(report, positions, response.opened_positions())
    commitment = Commitment(root=receipt.root, leaves=receipt.leaves)
    blocks: dict[int, tuple[tuple[int, ...], str]] = {}
    wanted = set(positions)
    if signed is not None and signed.protocol == protocol.V2:
        report.protocol, report.block_size = protocol.V2, signed.block_size
        report.embedding_model = signed.embedding
        if response.openings:
            report.add(Reason.MALFORMED, "a version-2 record answered with version-1 openings")
        for block in response.blocks:
            if block.opening.position in wanted:
                wanted.discard(block.opening.position)
                check_block(report, commitment, signed, block, blocks)
    else:
        if response.blocks:
            report.add(Reason.MALFORMED, "a version-1 record answered with version-2 blocks")
        report.block_size = response.block_size
        for opened in response.openings:
            if opened.opening.position in wanted:
                wanted.discard(opened.opening.position)  # a repeated position is checked once
                check_opening(report, commitment, response.block_size, opened, blocks)
                if opened.opening.position in report.verified:
                    o = opened.opening
                    report.keep(o.block_start, len(o.block_token_ids), None, o.block_text)
    if receipt.leaves == 0 and receipt.root != _EMPTY_ROOT_HEX:
        report.add(Reason.COUNT_UNPROVEN, "no hidden tokens, yet the root is not the empty root")
    elif receipt.leaves and receipt.leaves - 1 not in report.verified:
        report.add(
            Reason.COUNT_UNPROVEN,
            f"the last position {receipt.leaves - 1} did not verify, so nothing pins the tree "
            f"size to the billed {receipt.leaves} tokens",
        )
    if retokenize is not None:
        severity = Severity.FAIL if token_policy is TokenPolicy.EXACT else Severity.WARN
        for start, (ids, text) in sorted(blocks.items()):
            got = [int(t) for t in retokenize(text)]
            report.retokenized += 1
            if got != list(ids):
                report.add(
                    Reason.RETOKENIZE_MISMATCH,
                    f"block at {start}: text {text!r} re-tokenizes to {short(got)}, "
                    f"the block commits {short(ids)}",
                    start,
                    severity,
                )
    return report.done()


def _check_record(
    report: Findings, receipt: Receipt, record: dict[str, Any], keys: Mapping[str, PublicKey]
) -> Commitment | None:
    key = keys.get(str(record.get("key_id")))
    if key is None:
        report.add(Reason.UNKNOWN_KEY, f"record key_id {record.get('key_id')!r} is not published")
    elif not verify_signature(record, key):
        report.add(Reason.BAD_SIGNATURE, f"record signature does not verify with {key.key_id}")
    try:
        commitment = Commitment.from_dict(record["commitment"])
        billed = int(record["usage"]["completion_tokens_details"]["reasoning_tokens"])
        seen = {
            "request_id": record["request_id"],
            "seq": record["seq"],
            "root": commitment.root,
            "leaves": commitment.leaves,
            "key_id": record["key_id"],
            "signature": record["signature"],
        }
    except (KeyError, TypeError, ValueError) as exc:
        report.add(Reason.MALFORMED, f"record: missing or bad field {exc}")
        return None
    differ = [name for name, value in seen.items() if value != getattr(receipt, name)]
    if differ:
        shown = ", ".join(f"{n} {seen[n]!r} != {getattr(receipt, n)!r}" for n in differ)
        report.add(Reason.RECEIPT_MISMATCH, f"record differs from the receipt: {shown}")
    if commitment.alg != ALG:
        report.add(Reason.MALFORMED, f"unsupported commitment alg {commitment.alg!r}")
    if billed != receipt.leaves:
        report.add(
            Reason.COUNT_MISMATCH,
            f"usage bills {billed} reasoning tokens, the receipt commits {receipt.leaves} leaves",
        )
    if commitment.protocol == protocol.V2 and (
        not commitment.block_size or commitment.block_size < 1 or not commitment.embedding
    ):
        report.add(Reason.MALFORMED, "a version-2 commitment needs block_size and embedding")
        return None
    return commitment


def _check_positions(report: Findings, positions: tuple[int, ...], opened: list[int]) -> None:
    if sorted(opened) == list(positions):
        return
    missing = sorted(set(positions) - set(opened))
    extra = sorted(set(opened) - set(positions))
    repeated = sorted({p for p in opened if opened.count(p) > 1})
    parts = [
        f"{label} {short(values)}"
        for label, values in (("missing", missing), ("not sampled", extra), ("repeated", repeated))
        if values
    ]
    report.add(
        Reason.WRONG_POSITIONS,
        f"opened positions are not the ones the nonce derives: {'; '.join(parts)}",
    )
