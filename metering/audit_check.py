"""Checking an audit answer: the auditor's side of :mod:`metering.audit`.

:func:`verify_audit` never raises on a bad answer: a bad answer is an expected outcome, so it
returns an :class:`AuditReport` listing every :class:`Finding`. Pure: hashing and data only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fairgate.metering import protocol
from fairgate.metering.audit import (
    AuditResponse,
    Challenge,
    OpenedBlock,
    OpenedLeaf,
)
from fairgate.metering.commitment import Commitment, block_fingerprint, leaf_data
from fairgate.metering.errors import ProofError
from fairgate.metering.merkle import ALG, EMPTY_ROOT, hash_leaf, verify_inclusion
from fairgate.metering.record import Receipt, verify_signature
from fairgate.metering.signing import PublicKey

_EMPTY_ROOT_HEX = EMPTY_ROOT.hex()
Retokenize = Callable[[str], Sequence[int]]


class Reason(StrEnum):
    MALFORMED = "malformed"  # the answer (or its record) is not the shape the protocol defines
    UNANSWERED = "unanswered"  # the gateway would not answer for a receipt (no record, no opening)
    UNKNOWN_KEY = "unknown_key"  # the record names a key the gateway does not publish
    BAD_SIGNATURE = "bad_signature"  # the record's signature does not verify
    RECEIPT_MISMATCH = "receipt_mismatch"  # the record differs from the receipt the client holds
    COUNT_MISMATCH = "count_mismatch"  # billed reasoning tokens differ from committed leaves
    WRONG_POSITIONS = "wrong_positions"  # opened positions are not the ones the nonce derives
    TOKEN_MISMATCH = "token_mismatch"  # the leaf's token id is not at its place in its block
    BLOCK_LAYOUT = "block_layout"  # a block is not where block_size puts it, or blocks disagree
    BLOCK_MISMATCH = "block_mismatch"  # the block's fingerprint does not rebuild the leaf
    BAD_PROOF = "bad_proof"  # the inclusion proof does not lead to the root at size leaves
    COUNT_UNPROVEN = "count_unproven"  # the last position did not verify: the count is not pinned
    RETOKENIZE_MISMATCH = "retokenize_mismatch"  # a block's text does not re-tokenize to its ids
    UNKNOWN_PROTOCOL = "unknown_protocol"  # the record's commitment protocol is not one we know
    CONTENT_MISMATCH = "content_mismatch"  # a full opening's ids and text do not rebuild it
    # The semantic checks (metering.semantic): genuine reasoning about this request?
    IRRELEVANT = "irrelevant"  # a block is about neither the prompt nor the answer
    DUPLICATE = "duplicate"  # two blocks of one request (near) repeat each other
    SPLICED = "spliced"  # a block (near) repeats a block of another request
    INCOHERENT = "incoherent"  # adjacent blocks do not continue each other
    FILLER = "filler"  # the learned block classifier scores a block as padding
    LENGTH_OUTLIER = "length_outlier"  # the billed count is far above what prompt+answer predict
    EMBEDDING_MISMATCH = "embedding_mismatch"  # a full opening's text embeds elsewhere


class Severity(StrEnum):
    FAIL = "fail"
    WARN = "warn"


class TokenPolicy(StrEnum):
    """What a re-tokenization mismatch is: a failure (``EXACT``) or a warning (``REPORT``)."""

    EXACT = "exact"
    REPORT = "report"


@dataclass(frozen=True, slots=True)
class Finding:
    reason: Reason
    detail: str
    position: int | None = None
    severity: Severity = Severity.FAIL

    def __str__(self) -> str:
        where = f" at position {self.position}" if self.position is not None else ""
        return f"{self.severity.upper()} {self.reason}{where}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": str(self.reason),
            "severity": str(self.severity),
            "position": self.position,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class VerifiedBlock:
    """An opened block that checked out: its embedding (v2) and, if revealed, its text."""

    start: int
    count: int
    embedding: bytes | None
    text: str | None


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of one challenge; ``ok`` when no finding is a failure."""

    request_id: str
    leaves: int
    positions: tuple[int, ...]  # what the nonce derives
    verified: tuple[int, ...]  # the positions whose opening checked out
    findings: tuple[Finding, ...] = ()
    blocks_retokenized: int = 0
    protocol: int = protocol.V1
    block_size: int | None = None
    blocks: tuple[VerifiedBlock, ...] = ()  # by start, each once
    embedding_model: str | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity is Severity.FAIL for f in self.findings)

    @property
    def unverifiable(self) -> bool:
        """The auditor cannot judge this answer at all (a protocol it does not know)."""
        return any(f.reason is Reason.UNKNOWN_PROTOCOL for f in self.findings)

    def summary(self) -> str:
        state = "OK" if self.ok else "FAILED"
        opened = ", ".join(map(str, self.positions)) or "none"
        text = (
            f"{state}: request {self.request_id}, {self.leaves} hidden tokens; "
            f"sampled positions {opened}; {len(self.verified)} verified"
        )
        if self.blocks_retokenized:
            text += f"; {self.blocks_retokenized} block(s) re-tokenized"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "request_id": self.request_id,
            "leaves": self.leaves,
            "positions": list(self.positions),
            "verified": list(self.verified),
            "blocks_retokenized": self.blocks_retokenized,
            "protocol": self.protocol,
            "blocks_opened": len(self.blocks),
            "findings": [f.to_dict() for f in self.findings],
        }

    @classmethod
    def unanswered(cls, receipt: Receipt, detail: str) -> AuditReport:
        """The gateway refused to answer for ``receipt`` (e.g. it has no such record)."""
        finding = Finding(Reason.UNANSWERED, detail)
        return cls(receipt.request_id, receipt.leaves, (), (), (finding,))


# -- the sample ---------------------------------------------------------------------------------


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
    report = _Findings(receipt, positions)
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
                _check_block(report, commitment, signed, block, blocks)
    else:
        if response.blocks:
            report.add(Reason.MALFORMED, "a version-1 record answered with version-2 blocks")
        report.block_size = response.block_size
        for opened in response.openings:
            if opened.opening.position in wanted:
                wanted.discard(opened.opening.position)  # a repeated position is checked once
                _check_opening(report, commitment, response.block_size, opened, blocks)
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
                    f"block at {start}: text {text!r} re-tokenizes to {_short(got)}, "
                    f"the block commits {_short(ids)}",
                    start,
                    severity,
                )
    return report.done()


class _Findings:
    __slots__ = (
        "block_size",
        "blocks",
        "embedding_model",
        "findings",
        "positions",
        "protocol",
        "receipt",
        "retokenized",
        "verified",
    )

    def __init__(self, receipt: Receipt, positions: tuple[int, ...]) -> None:
        self.receipt = receipt
        self.positions = positions
        self.findings: list[Finding] = []
        self.verified: set[int] = set()
        self.retokenized = 0
        self.protocol = protocol.V1
        self.block_size: int | None = None
        self.embedding_model: str | None = None
        self.blocks: dict[int, VerifiedBlock] = {}

    def keep(self, start: int, count: int, embedding: bytes | None, text: str | None) -> None:
        self.blocks.setdefault(start, VerifiedBlock(start, count, embedding, text))

    def add(
        self,
        reason: Reason,
        detail: str,
        position: int | None = None,
        severity: Severity = Severity.FAIL,
    ) -> None:
        self.findings.append(Finding(reason, detail, position, severity))

    def done(self) -> AuditReport:
        return AuditReport(
            request_id=self.receipt.request_id,
            leaves=self.receipt.leaves,
            positions=self.positions,
            verified=tuple(sorted(self.verified)),
            findings=tuple(self.findings),
            blocks_retokenized=self.retokenized,
            protocol=self.protocol,
            block_size=self.block_size,
            blocks=tuple(self.blocks[s] for s in sorted(self.blocks)),
            embedding_model=self.embedding_model,
        )


def _check_record(
    report: _Findings, receipt: Receipt, record: dict[str, Any], keys: Mapping[str, PublicKey]
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


def _check_positions(report: _Findings, positions: tuple[int, ...], opened: list[int]) -> None:
    if sorted(opened) == list(positions):
        return
    missing = sorted(set(positions) - set(opened))
    extra = sorted(set(opened) - set(positions))
    repeated = sorted({p for p in opened if opened.count(p) > 1})
    parts = [
        f"{label} {_short(values)}"
        for label, values in (("missing", missing), ("not sampled", extra), ("repeated", repeated))
        if values
    ]
    report.add(
        Reason.WRONG_POSITIONS,
        f"opened positions are not the ones the nonce derives: {'; '.join(parts)}",
    )


def _check_opening(
    report: _Findings,
    commitment: Commitment,
    block_size: int | None,
    opened: OpenedLeaf,
    blocks: dict[int, tuple[tuple[int, ...], str]],
) -> None:
    o = opened.opening
    position, ids = o.position, o.block_token_ids
    offset = position - o.block_start
    if not 0 <= offset < len(ids):
        report.add(Reason.BLOCK_LAYOUT, f"block at {o.block_start} does not hold it", position)
        return
    if ids[offset] != o.token_id:
        report.add(
            Reason.TOKEN_MISMATCH,
            f"token id {o.token_id} differs from the block's {ids[offset]} at that place",
            position,
        )
        return
    if block_size is None:
        report.add(Reason.BLOCK_LAYOUT, "the answer opens leaves but gives no block size", position)
        return
    if o.block_start != position - position % block_size:
        report.add(
            Reason.BLOCK_LAYOUT,
            f"block starts at {o.block_start}, block size {block_size} puts it at "
            f"{position - position % block_size}",
            position,
        )
        return
    if len(ids) != min(block_size, commitment.leaves - o.block_start):
        report.add(
            Reason.BLOCK_LAYOUT,
            f"block at {o.block_start} has {len(ids)} tokens; block size {block_size} and "
            f"{commitment.leaves} leaves give {min(block_size, commitment.leaves - o.block_start)}",
            position,
        )
        return
    known = blocks.setdefault(o.block_start, (ids, o.block_text))
    if known != (ids, o.block_text):
        report.add(Reason.BLOCK_LAYOUT, f"two openings disagree on block {o.block_start}", position)
        return
    fingerprint = block_fingerprint(o.block_start, ids, o.block_text)
    leaf = hash_leaf(leaf_data(o.salt, position, o.token_id, fingerprint))
    if leaf != opened.leaf:
        report.add(
            Reason.BLOCK_MISMATCH,
            f"the block's token ids and text do not rebuild the committed leaf "
            f"{opened.leaf.hex()[:16]}…",
            position,
        )
        return
    try:
        verify_inclusion(leaf, position, commitment.leaves, o.proof, bytes.fromhex(commitment.root))
    except ProofError as exc:
        report.add(Reason.BAD_PROOF, f"at tree size {commitment.leaves}: {exc}", position)
        return
    report.verified.add(position)


def _check_block(
    report: _Findings,
    commitment: Commitment,
    signed: Commitment,
    opened: OpenedBlock,
    blocks: dict[int, tuple[tuple[int, ...], str]],
) -> None:
    """Version 2: layout, the rebuilt leaf, the proof; a full opening's content too."""
    o = opened.opening
    position, size = o.position, signed.block_size or 1
    start = position - position % size
    count = min(size, commitment.leaves - start)
    if (o.block_start, o.count) != (start, count):
        report.add(
            Reason.BLOCK_LAYOUT,
            f"block ({o.block_start}, {o.count} tokens); block size {size} and "
            f"{commitment.leaves} leaves give ({start}, {count})",
            position,
        )
        return
    known = report.blocks.get(start)
    if known is not None and known.embedding != o.embedding:
        report.add(Reason.BLOCK_LAYOUT, f"two openings disagree on block {start}", position)
        return
    leaf = o.leaf(signed.embedding or "")
    if leaf != opened.leaf:
        report.add(
            Reason.BLOCK_MISMATCH,
            f"the block's embedding and content do not rebuild the committed leaf "
            f"{opened.leaf.hex()[:16]}…",
            position,
        )
        return
    if o.full and not o.content_matches():
        report.add(
            Reason.CONTENT_MISMATCH, "the opened ids and text do not rebuild the content", position
        )
        return
    try:
        verify_inclusion(leaf, position, commitment.leaves, o.proof, bytes.fromhex(commitment.root))
    except ProofError as exc:
        report.add(Reason.BAD_PROOF, f"at tree size {commitment.leaves}: {exc}", position)
        return
    report.verified.add(position)
    report.keep(start, count, o.embedding, o.text)
    if o.full and o.token_ids is not None and o.text is not None:
        blocks.setdefault(start, (o.token_ids, o.text))


# -- small parsing helpers ----------------------------------------------------------------------


def _short(values: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return f"[{shown}{', …' if len(values) > limit else ''}]"
