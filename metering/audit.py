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

**Protocol 2** (records whose commitment says ``protocol: 2``, :mod:`metering.protocol`): the
answer carries ``blocks`` instead of ``openings``, one :class:`OpenedBlock` per position with the
block's salt, keyed content commitment and int8 embedding, and by default nothing else: the
auditor checks the layout, the rebuilt leaf and the proof, and hands the embeddings to the
semantic checks (:mod:`metering.semantic`, driven by :mod:`metering.auditor`). A challenge with
``reveal: "full"`` also gets the ids, text and text key, if the tenant consented.

What a protocol-1 answer reveals: the sampled blocks (ids, text and salt) and the proof hashes.
Never the text, ids or salt of a block without a sampled position (each block's salt is derived
from the request's secret, see :mod:`metering.commitment`). Proof elements are hashes of
unopened leaves and subtrees; an unopened leaf's preimage includes its block's secret salt and
fingerprint, so it cannot be guessed from the proofs.

Verification (:mod:`metering.audit_check`) does not raise on a bad answer: a bad answer is an
expected outcome, so it returns an :class:`AuditReport` listing every finding. This module is
pure: hashing and data only, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fairgate.metering import protocol
from fairgate.metering.commitment import (
    LeafOpening,
    Opening,
)
from fairgate.metering.commitment_v2 import BlockOpening
from fairgate.metering.merkle import EMPTY_ROOT, HASH_SIZE
from fairgate.metering.record import Receipt

DEFAULT_SAMPLES = 8
REVEAL_EMBEDDINGS = "embeddings"  # version 2's default: no token text leaves the store
REVEAL_FULL = "full"  # ids and text too; the gateway answers it only for consenting tenants
MAX_SAMPLES = 256  # bounds the answer's size; the gateway refuses more rather than cap silently
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 64
RESPONSE_OBJECT = "fairgate.audit.response"
_SAMPLE_DOMAIN = b"fairgate/audit-sample/v1\x00"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_EMPTY_ROOT_HEX = EMPTY_ROOT.hex()


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
    reveal: str = REVEAL_EMBEDDINGS

    def __post_init__(self) -> None:
        if self.reveal not in (REVEAL_EMBEDDINGS, REVEAL_FULL):
            raise ValueError(f"reveal must be {REVEAL_EMBEDDINGS!r} or {REVEAL_FULL!r}")
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
        data: dict[str, Any] = {
            "request_id": self.request_id,
            "nonce": self.nonce.hex(),
            "samples": self.samples,
        }
        if self.reveal != REVEAL_EMBEDDINGS:
            data["reveal"] = self.reveal
        return data


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
class OpenedBlock:
    """Version 2: one sampled position, opened by its block's embedding (see ``protocol``)."""

    leaf: bytes
    opening: BlockOpening

    def to_dict(self) -> dict[str, Any]:
        return {"leaf": self.leaf.hex(), **self.opening.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenedBlock:
        leaf = bytes.fromhex(_str(data, "leaf"))
        for name in ("position", "block_start", "count"):
            _int(data, name)
        for name in ("salt", "content", "embedding"):
            _str(data, name)
        for element in _list(data, "proof"):
            _as_str(element, "proof")
        if "text_key" in data:
            _str(data, "text_key")
            _str(data, "text")
            for t in _list(data, "token_ids"):
                _as_int(t, "token_ids")
        return cls(leaf=leaf, opening=BlockOpening.from_dict(dict(data)))


@dataclass(frozen=True, slots=True)
class AuditResponse:
    """The gateway's answer to a :class:`Challenge`: ``openings`` (v1) or ``blocks`` (v2)."""

    request_id: str
    nonce: bytes
    samples: int
    record: dict[str, Any]
    block_size: int | None  # None when there is nothing to open
    openings: tuple[OpenedLeaf, ...] = field(default_factory=tuple)
    blocks: tuple[OpenedBlock, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "object": RESPONSE_OBJECT,
            "request_id": self.request_id,
            "nonce": self.nonce.hex(),
            "samples": self.samples,
            "block_size": self.block_size,
            "record": self.record,
            "openings": [opened.to_dict() for opened in self.openings],
        }
        if self.blocks:
            data["blocks"] = [opened.to_dict() for opened in self.blocks]
        return data

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
        blocks = []
        for index, item in enumerate(data.get("blocks") or []):
            if not isinstance(item, Mapping):
                raise ValueError(f"blocks[{index}]: not an object")
            try:
                blocks.append(OpenedBlock.from_dict(item))
            except (ValueError, KeyError) as exc:
                raise ValueError(f"blocks[{index}].{exc}") from None
        return cls(
            request_id=_str(data, "request_id"),
            nonce=bytes.fromhex(_str(data, "nonce")),
            samples=_int(data, "samples"),
            record=record,
            block_size=block_size,
            openings=tuple(openings),
            blocks=tuple(blocks),
        )

    def opened_positions(self) -> list[int]:
        return [o.opening.position for o in self.openings] + [
            b.opening.position for b in self.blocks
        ]


class RevealRefused(ValueError):
    """A full opening was asked for a tenant that did not consent to showing its reasoning."""


def answer_challenge(
    record: Mapping[str, Any],
    opening: Opening | None,
    challenge: Challenge,
    *,
    allow_full: bool = False,
) -> AuditResponse:
    """The gateway's answer: the signed record and the sampled leaves, opened.

    ``opening`` is the audit store's (``Ledger.hidden``); it may be ``None`` only when the record
    commits to no hidden tokens. Only the blocks of sampled positions leave the store; for a
    version-2 record only their embeddings, unless ``challenge.reveal`` is full and
    ``allow_full`` (the tenant consented).
    """
    full = challenge.reveal == REVEAL_FULL
    if full and not allow_full:
        raise RevealRefused("this tenant has not consented to full openings of its reasoning")
    if record.get("request_id") != challenge.request_id:
        raise ValueError(f"record is for {record.get('request_id')!r}, not the challenged request")
    leaves = int(record["commitment"]["leaves"])
    positions = challenge.positions(leaves)
    openings: list[OpenedLeaf] = []
    blocks: list[OpenedBlock] = []
    if positions:
        if opening is None or opening.leaves != leaves:
            have = "no opening" if opening is None else f"an opening of {opening.leaves} tokens"
            raise ValueError(f"the record commits to {leaves} hidden tokens, the store has {have}")
        tree = opening.tree()
        if opening.protocol == protocol.V2:
            blocks = [
                OpenedBlock(tree.levels[0][p], opening.open_block(p, tree, full=full))
                for p in positions
            ]
        else:
            openings = [
                OpenedLeaf(tree.levels[0][p], opening.open_leaf(p, tree)) for p in positions
            ]
    return AuditResponse(
        request_id=challenge.request_id,
        nonce=challenge.nonce,
        samples=challenge.samples,
        record=dict(record),
        block_size=None if opening is None or not positions else opening.block_size,
        openings=tuple(openings),
        blocks=tuple(blocks),
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
    if len(receipt.root) != 2 * HASH_SIZE or not is_hex(receipt.root):
        raise ValueError("root: must be 64 hex digits")
    return receipt


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


def is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
