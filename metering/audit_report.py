"""What checking an audit answer finds: reasons, findings and the report.

:class:`AuditReport` is the outcome of :func:`metering.audit_check.verify_audit`; the semantic
checks (:mod:`metering.semantic`, :mod:`metering.block_classifier`) and the length flag
(:mod:`metering.estimator`) speak in the same :class:`Finding` values. Pure: data only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fairgate.metering import protocol
from fairgate.metering.record import Receipt


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


class Findings:
    """The findings and verified blocks of one check as it runs; ``done`` freezes them."""

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
