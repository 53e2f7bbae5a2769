"""The auditor: a nonce-driven challenge that samples a request's hidden tokens and checks them.

A client is billed for reasoning tokens it never sees. Its receipt carries the leaf count and the
root of an RFC 6962 tree over those tokens (:mod:`metering.commitment`); an auditor holding the
receipt checks, by sampling, that the count is backed by real tokens (CoIn, arXiv 2505.13778).

Protocol::

    auditor                                                gateway
      receipt: request_id, seq, leaves, root, key_id, signature
      public keys: GET /.well-known/fairgate-keys (JWKS)
      nonce: >= 16 fresh random bytes
          ── POST /v1/audit/challenge {request_id, nonce, samples} ──▶
                                                  positions = sample_positions(nonce, request_id,
                                                                               leaves, samples)
          ◀── {record, block_size, openings: [one per position]} ──
      positions = sample_positions(...)   (the same function: the gateway cannot choose them)
      check record, count, positions, every opening; optionally re-tokenize each block

* **Sample.** :func:`sample_positions` is a hash-based PRF of (nonce, request id, leaves): a seed
  ``HMAC-SHA256(nonce, domain || u32 len || request id || u64 leaves)`` expands by SHA-256 in
  counter mode into uniform draws (rejection sampling, no modulo bias) that drive a partial
  Fisher-Yates shuffle of positions ``0 .. leaves-2``. It returns ``min(samples, leaves)``
  distinct positions, sorted, and **always** the last one, ``leaves - 1``: a middle leaf's proof
  also verifies under some larger tree sizes, the last leaf's proof only under the true one, so
  the last position pins the billed count. The commitment is signed before the nonce exists, so
  the gateway cannot arrange for the sample to miss padding it added.
* **Answer** (:func:`answer_challenge`, the gateway's side): the signed ledger record, the block
  size, and per sampled position the committed leaf hash and a :class:`LeafOpening` (position,
  token id, the block's salt, the whole block — start, token ids, text — the leaf's
  fingerprint binds, and the inclusion proof).
* **Checks** (:func:`verify_audit`), each failure a :class:`Finding` with a :class:`Reason`:
  the record's Ed25519 signature under a published key whose id is derived from the key itself;
  the record's request id, seq, root, leaf count, key id and signature equal the receipt's;
  ``usage.completion_tokens_details.reasoning_tokens == leaves``; the opened positions are exactly
  the derived ones; per opening, the token id sits at its place in its block, the block lies where
  ``block_size`` puts it (and has the length ``leaves`` implies), two openings of one block agree,
  the block's fingerprint rebuilds the committed leaf, and the leaf's inclusion proof leads to the
  receipt's root at tree size ``leaves``; the last position verified; and, given a ``retokenize``
  callable, each opened block's text re-tokenizes to its token ids.
* **Re-tokenizing** is exact when the provider streams one token per delta (vLLM does): a block's
  text is then exactly its tokens' text. Tokenizers are not always canonical (a model may emit a
  tokenization its tokenizer would not produce), so :class:`TokenPolicy` chooses: ``EXACT`` makes a
  mismatch a failure, ``REPORT`` records it as a warning that leaves the audit ``ok``.
* **Zero hidden tokens**: nothing is sampled or opened; the auditor still checks the signed record,
  the count, and that the root is RFC 6962's empty root.

What an answer reveals: the sampled blocks (ids, text and salt) and the proof hashes. Never the
text, ids or salt of a block without a sampled position (each block's salt is derived from the
request's secret, see :mod:`metering.commitment`). Proof elements are hashes of unopened leaves
and subtrees; an unopened leaf's preimage includes its block's secret salt and fingerprint, so it
cannot be guessed from the proofs.

Verification does not raise on a bad answer: a bad answer is an expected outcome, so it returns an
:class:`AuditReport` listing every finding. This module is pure: hashing and data only, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from metering.commitment import (
    Commitment,
    LeafOpening,
    Opening,
    block_fingerprint,
    leaf_data,
)
from metering.errors import ProofError
from metering.merkle import ALG, EMPTY_ROOT, HASH_SIZE, hash_leaf, verify_inclusion
from metering.record import Receipt, verify_signature
from metering.signing import PublicKey

DEFAULT_SAMPLES = 8
MAX_SAMPLES = 256  # bounds the answer's size; the gateway refuses more rather than cap silently
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 64
RESPONSE_OBJECT = "fairgate.audit.response"
_SAMPLE_DOMAIN = b"fairgate/audit-sample/v1\x00"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
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
class AuditReport:
    """The outcome of one challenge; ``ok`` when no finding is a failure."""

    request_id: str
    leaves: int
    positions: tuple[int, ...]  # what the nonce derives
    verified: tuple[int, ...]  # the positions whose opening checked out
    findings: tuple[Finding, ...] = ()
    blocks_retokenized: int = 0

    @property
    def ok(self) -> bool:
        return not any(f.severity is Severity.FAIL for f in self.findings)

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
            "findings": [f.to_dict() for f in self.findings],
        }

    @classmethod
    def unanswered(cls, receipt: Receipt, detail: str) -> AuditReport:
        """The gateway refused to answer for ``receipt`` (e.g. it has no such record)."""
        finding = Finding(Reason.UNANSWERED, detail)
        return cls(receipt.request_id, receipt.leaves, (), (), (finding,))


# -- the sample ---------------------------------------------------------------------------------


def _uniform_draws(seed: bytes) -> Iterator[int]:
    """An endless stream of 64-bit integers: SHA-256(seed || u64 counter), 4 per block."""
    counter = 0
    while True:
        block = hashlib.sha256(seed + _U64.pack(counter)).digest()
        counter += 1
        for offset in range(0, HASH_SIZE, 8):
            yield _U64.unpack_from(block, offset)[0]


def _below(draws: Iterator[int], bound: int) -> int:
    """A uniform integer in ``0 .. bound-1``; rejects the draws that would bias the modulo."""
    limit = (1 << 64) - (1 << 64) % bound
    for value in draws:
        if value < limit:
            return value % bound
    raise AssertionError("the draw stream is endless")  # pragma: no cover


def sample_positions(nonce: bytes, request_id: str, leaves: int, samples: int) -> tuple[int, ...]:
    """The positions a challenge opens: ``min(samples, leaves)``, sorted, always ``leaves - 1``.

    Deterministic in its arguments, so auditor and gateway derive the same sample:

    >>> sample_positions(bytes(16), "req_1", 100, 4)
    (40, 82, 88, 99)
    >>> sample_positions(bytes(16), "req_1", 3, 8)
    (0, 1, 2)
    >>> sample_positions(bytes(16), "req_1", 0, 8)
    ()
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if leaves < 0:
        raise ValueError(f"leaves must be >= 0, got {leaves}")
    if leaves == 0:
        return ()
    rid = request_id.encode("utf-8")
    message = _SAMPLE_DOMAIN + _U32.pack(len(rid)) + rid + _U64.pack(leaves)
    draws = _uniform_draws(hmac.new(nonce, message, hashlib.sha256).digest())
    population = leaves - 1  # positions 0 .. leaves-2; the last is always added
    swapped: dict[int, int] = {}  # a partial Fisher-Yates shuffle of range(population), sparse
    chosen: list[int] = []
    for i in range(min(samples - 1, population)):
        j = i + _below(draws, population - i)
        chosen.append(swapped.get(j, j))
        swapped[j] = swapped.get(i, i)
    chosen.append(leaves - 1)
    return tuple(sorted(chosen))


@dataclass(frozen=True, slots=True)
class Challenge:
    """What the auditor sends; ``nonce`` must be fresh randomness the gateway cannot predict."""

    request_id: str
    nonce: bytes
    samples: int = DEFAULT_SAMPLES

    def __post_init__(self) -> None:
        if not self.request_id:
            raise ValueError("request_id must be a non-empty string")
        if not MIN_NONCE_BYTES <= len(self.nonce) <= MAX_NONCE_BYTES:
            raise ValueError(
                f"nonce must be {MIN_NONCE_BYTES}..{MAX_NONCE_BYTES} bytes, got {len(self.nonce)}"
            )
        if not 1 <= self.samples <= MAX_SAMPLES:
            raise ValueError(f"samples must be 1..{MAX_SAMPLES}, got {self.samples}")

    def positions(self, leaves: int) -> tuple[int, ...]:
        return sample_positions(self.nonce, self.request_id, leaves, self.samples)

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "nonce": self.nonce.hex(), "samples": self.samples}


# -- the answer ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenedLeaf:
    """One sampled position: the committed leaf hash and what opens it."""

    leaf: bytes
    opening: LeafOpening

    def to_dict(self) -> dict[str, Any]:
        return {"leaf": self.leaf.hex(), **self.opening.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenedLeaf:
        leaf = bytes.fromhex(_str(data, "leaf"))
        fields = {
            "position": _int(data, "position"),
            "token_id": _int(data, "token_id"),
            "salt": _str(data, "salt"),
            "block_start": _int(data, "block_start"),
            "block_token_ids": [
                _as_int(t, "block_token_ids") for t in _list(data, "block_token_ids")
            ],
            "block_text": _str(data, "block_text"),
            "proof": [_as_str(p, "proof") for p in _list(data, "proof")],
        }
        return cls(leaf=leaf, opening=LeafOpening.from_dict(fields))


@dataclass(frozen=True, slots=True)
class AuditResponse:
    """The gateway's answer to a :class:`Challenge`."""

    request_id: str
    nonce: bytes
    samples: int
    record: dict[str, Any]
    block_size: int | None  # None when there is nothing to open
    openings: tuple[OpenedLeaf, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": RESPONSE_OBJECT,
            "request_id": self.request_id,
            "nonce": self.nonce.hex(),
            "samples": self.samples,
            "block_size": self.block_size,
            "record": self.record,
            "openings": [opened.to_dict() for opened in self.openings],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditResponse:
        """Parse an answer; raises ``ValueError`` naming the first bad field."""
        if not isinstance(data, Mapping):
            raise ValueError("the answer is not a JSON object")
        record = data.get("record")
        if not isinstance(record, dict):
            raise ValueError("record: missing or not an object")
        block_size = data.get("block_size")
        if block_size is not None:
            block_size = _int(data, "block_size")
            if block_size < 1:
                raise ValueError(f"block_size: must be >= 1, got {block_size}")
        openings = []
        for index, item in enumerate(_list(data, "openings")):
            if not isinstance(item, Mapping):
                raise ValueError(f"openings[{index}]: not an object")
            try:
                openings.append(OpenedLeaf.from_dict(item))
            except ValueError as exc:
                raise ValueError(f"openings[{index}].{exc}") from None
        return cls(
            request_id=_str(data, "request_id"),
            nonce=bytes.fromhex(_str(data, "nonce")),
            samples=_int(data, "samples"),
            record=record,
            block_size=block_size,
            openings=tuple(openings),
        )


def answer_challenge(
    record: Mapping[str, Any], opening: Opening | None, challenge: Challenge
) -> AuditResponse:
    """The gateway's answer: the signed record and the sampled leaves, opened.

    ``opening`` is the audit store's (``Ledger.hidden``); it may be ``None`` only when the record
    commits to no hidden tokens. Only the blocks of sampled positions leave the store.
    """
    if record.get("request_id") != challenge.request_id:
        raise ValueError(f"record is for {record.get('request_id')!r}, not the challenged request")
    leaves = int(record["commitment"]["leaves"])
    positions = challenge.positions(leaves)
    openings: list[OpenedLeaf] = []
    if positions:
        if opening is None or opening.leaves != leaves:
            have = "no opening" if opening is None else f"an opening of {opening.leaves} tokens"
            raise ValueError(f"the record commits to {leaves} hidden tokens, the store has {have}")
        tree = opening.tree()
        openings = [OpenedLeaf(tree.levels[0][p], opening.open_leaf(p, tree)) for p in positions]
    return AuditResponse(
        request_id=challenge.request_id,
        nonce=challenge.nonce,
        samples=challenge.samples,
        record=dict(record),
        block_size=None if opening is None or not positions else opening.block_size,
        openings=tuple(openings),
    )


# -- the checks ---------------------------------------------------------------------------------


def parse_receipt(data: Mapping[str, Any]) -> Receipt:
    """A receipt from its JSON form (as a completion's ``receipt``); raises ``ValueError``."""
    if not isinstance(data, Mapping):
        raise ValueError("a receipt is a JSON object")
    receipt = Receipt(
        request_id=_str(data, "request_id"),
        seq=_int(data, "seq"),
        leaves=_int(data, "leaves"),
        root=_str(data, "root"),
        key_id=_str(data, "key_id"),
        signature=_str(data, "signature"),
    )
    if receipt.leaves < 0 or receipt.seq < 0:
        raise ValueError("seq and leaves must be >= 0")
    if len(receipt.root) != 2 * HASH_SIZE or not _is_hex(receipt.root):
        raise ValueError("root: must be 64 hex digits")
    return receipt


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
    _check_record(report, receipt, response.record, {k.key_id: k for k in public_keys})
    _check_positions(report, positions, response.openings)
    commitment = Commitment(root=receipt.root, leaves=receipt.leaves)
    blocks: dict[int, tuple[tuple[int, ...], str]] = {}
    wanted = set(positions)
    for opened in response.openings:
        if opened.opening.position in wanted:
            wanted.discard(opened.opening.position)  # a repeated position is checked once
            _check_opening(report, commitment, response.block_size, opened, blocks)
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
    __slots__ = ("findings", "positions", "receipt", "retokenized", "verified")

    def __init__(self, receipt: Receipt, positions: tuple[int, ...]) -> None:
        self.receipt = receipt
        self.positions = positions
        self.findings: list[Finding] = []
        self.verified: set[int] = set()
        self.retokenized = 0

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
        )


def _check_record(
    report: _Findings, receipt: Receipt, record: dict[str, Any], keys: Mapping[str, PublicKey]
) -> None:
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
        return
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


def _check_positions(
    report: _Findings, positions: tuple[int, ...], openings: Sequence[OpenedLeaf]
) -> None:
    opened = [o.opening.position for o in openings]
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


# -- small parsing helpers ----------------------------------------------------------------------


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _short(values: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return f"[{shown}{', …' if len(values) > limit else ''}]"


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {type(value).__name__}")
    return value


def _as_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def _int(data: Mapping[str, Any], name: str) -> int:
    if name not in data:
        raise ValueError(f"{name}: missing")
    return _as_int(data[name], name)


def _str(data: Mapping[str, Any], name: str) -> str:
    if name not in data:
        raise ValueError(f"{name}: missing")
    return _as_str(data[name], name)


def _list(data: Mapping[str, Any], name: str) -> list[Any]:
    value = data.get(name)
    if not isinstance(value, list):
        raise ValueError(f"{name}: missing or not a list")
    return value
