"""Commitments to a request's hidden (reasoning) tokens.

The gateway cannot show reasoning tokens to the client, yet bills them. It commits to them so an
auditor can later check, by sampling, that the billed count is real (CoIn, arXiv 2505.13778):

* Hidden tokens are grouped into **blocks** of ``block_size`` consecutive positions. A block's
  **fingerprint** is SHA-256 over a domain tag, the block's start position, its token ids and its
  text, so a leaf opened later cannot be paired with a different block.
* Leaf ``i`` is the RFC 6962 leaf hash of ``salt_b || position || token id || fingerprint``
  (u64 and u32 big-endian, 32-byte fingerprint), where ``salt_b`` is its block's salt,
  SHA-256 of a domain tag, the request's 32-byte secret and the block index. Salts keep leaves
  of small-vocabulary token ids from being guessed out of published proofs; one salt per block
  means opening a leaf (which shows its whole block anyway) reveals nothing about the blocks
  left unopened.
* The tree over all leaves is RFC 6962 (see :mod:`metering.merkle`); the ledger record carries
  its root and the leaf count, which must equal the billed reasoning tokens.

Text arrives in chunks (one ``add`` per stream delta), and a chunk's text cannot be split per
token without the tokenizer. So a chunk's text belongs to the block of the chunk's first token
(a chunk without tokens belongs with the token before it). With one token per delta, as vLLM
streams, every block's text is exactly its tokens' text; in every case the block texts joined
are the whole hidden text, and each text is bound to exactly one block.

The :class:`Opening` (salt, token ids, block texts) stays in the provider's store, never in a
response; with it the gateway answers an auditor's challenge with :class:`LeafOpening` values,
which :func:`verify_leaf_opening` checks against the receipt's commitment. An auditor should
always open the last position (``leaves - 1``) besides its random sample: the last leaf's proof
verifies only for the true tree size, so it pins the billed count, whereas a leaf inside a
complete left subtree has the same proof in trees of several sizes.

This module is pure: hashlib, struct and array only; randomness comes in through ``salt``.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fairgate.metering import protocol
from fairgate.metering.commitment_v2 import BlockOpening, leaf_hashes_v2
from fairgate.metering.errors import CommitmentError
from fairgate.metering.merkle import ALG, EMPTY_ROOT, MerkleTree, hash_leaf, verify_inclusion
from fairgate.metering.protocol import block_salt

SALT_SIZE = 32
DEFAULT_BLOCK_SIZE = 16
_LEAF = struct.Struct(">33sQI32s")  # 0x00 || salt, position, token id, fingerprint
_sha256 = hashlib.sha256
# Texts -> their quantized embeddings (protocol.quantize), in order; see metering.embedding.
EmbedBlocks = Callable[[Sequence[str]], Sequence[bytes]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Commitment:
    """What a ledger record and a receipt carry about the hidden tokens.

    Version 2 (:mod:`metering.protocol`) adds the block size and the embedding model to the
    record; a version-1 record's dict is exactly what it was.
    """

    root: str
    leaves: int
    alg: str = ALG
    protocol: int = protocol.V1
    block_size: int | None = None
    embedding: str | None = None

    @classmethod
    def empty(cls) -> Commitment:
        """Zero hidden tokens: RFC 6962's empty root, SHA-256 of the empty string."""
        return cls(root=EMPTY_ROOT.hex(), leaves=0)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"alg": self.alg, "root": self.root, "leaves": self.leaves}
        if self.protocol != protocol.V1:
            data.update(protocol=self.protocol, block_size=self.block_size)
            data["embedding"] = self.embedding
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Commitment:
        block_size = data.get("block_size")
        embedding = data.get("embedding")
        return cls(
            root=str(data["root"]),
            leaves=int(data["leaves"]),
            alg=str(data["alg"]),
            protocol=int(data.get("protocol", protocol.V1)),
            block_size=None if block_size is None else int(block_size),
            embedding=None if embedding is None else str(embedding),
        )


def block_fingerprint(start: int, token_ids: Sequence[int], text: str) -> bytes:
    """Version 1: SHA-256 of domain tag || u64 start || u32 count || u32 ids || UTF-8 text."""
    return protocol.v1_fingerprint(start, token_ids, text)


def leaf_data(salt: bytes, position: int, token_id: int, fingerprint: bytes) -> bytes:
    """Version 1's RFC 6962 leaf input ``d`` of one hidden token (leaf = SHA-256(0x00||d))."""
    return protocol.v1_leaf_data(salt, position, token_id, fingerprint)


def _leaf_hashes(
    salt: bytes, block_size: int, token_ids: Sequence[int], block_texts: Sequence[str]
) -> list[bytes]:
    # The hot loop: one struct.pack and one SHA-256 per hidden token (see bench/metering_cost.py).
    pack, sha = _LEAF.pack, _sha256
    leaves: list[bytes] = []
    for block, text in enumerate(block_texts):
        start = block * block_size
        ids = token_ids[start : start + block_size]
        fingerprint = block_fingerprint(start, ids, text)
        prefix = b"\x00" + block_salt(salt, block)
        leaves.extend(
            sha(pack(prefix, position, token_id, fingerprint)).digest()
            for position, token_id in enumerate(ids, start)
        )
    return leaves


@dataclass(frozen=True, slots=True)
class LeafOpening:
    """One hidden token opened for an auditor: the leaf, its whole block and its audit path."""

    position: int
    token_id: int
    salt: bytes
    block_start: int
    block_token_ids: tuple[int, ...]
    block_text: str
    proof: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "token_id": self.token_id,
            "salt": self.salt.hex(),
            "block_start": self.block_start,
            "block_token_ids": list(self.block_token_ids),
            "block_text": self.block_text,
            "proof": [element.hex() for element in self.proof],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeafOpening:
        return cls(
            position=int(data["position"]),
            token_id=int(data["token_id"]),
            salt=bytes.fromhex(data["salt"]),
            block_start=int(data["block_start"]),
            block_token_ids=tuple(int(t) for t in data["block_token_ids"]),
            block_text=str(data["block_text"]),
            proof=tuple(bytes.fromhex(element) for element in data["proof"]),
        )


def verify_leaf_opening(commitment: Commitment, opened: LeafOpening) -> None:
    """Check an opened leaf against a commitment; raises ``CommitmentError`` or ``ProofError``.

    Checks that the token sits at its place in the block, recomputes the block fingerprint and
    the leaf hash, and verifies the inclusion proof against the committed root and leaf count.
    """
    if commitment.alg != ALG:
        raise CommitmentError(f"unsupported commitment alg {commitment.alg!r}")
    offset = opened.position - opened.block_start
    if not 0 <= offset < len(opened.block_token_ids):
        raise CommitmentError(f"position {opened.position} is outside its opened block")
    if opened.block_token_ids[offset] != opened.token_id:
        raise CommitmentError(f"token id at position {opened.position} differs from its block")
    fingerprint = block_fingerprint(opened.block_start, opened.block_token_ids, opened.block_text)
    leaf = hash_leaf(leaf_data(opened.salt, opened.position, opened.token_id, fingerprint))
    verify_inclusion(
        leaf, opened.position, commitment.leaves, opened.proof, bytes.fromhex(commitment.root)
    )


@dataclass(frozen=True, slots=True)
class Opening:
    """Everything needed to recompute a commitment and open its leaves; kept by the provider."""

    salt: bytes
    block_size: int
    token_ids: tuple[int, ...]
    block_texts: tuple[str, ...]
    embedding_model: str | None = None  # set with embeddings: version 2
    embeddings: tuple[bytes, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.salt) != SALT_SIZE:
            raise ValueError(f"salt must be {SALT_SIZE} bytes, got {len(self.salt)}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        blocks = -(-len(self.token_ids) // self.block_size)
        if len(self.block_texts) != blocks:
            raise ValueError(f"{len(self.token_ids)} tokens need {blocks} block texts")
        if (self.embeddings is None) != (self.embedding_model is None):
            raise ValueError("embeddings and embedding_model come together")
        if self.embeddings is not None and len(self.embeddings) != blocks:
            raise ValueError(f"{blocks} blocks need {blocks} embeddings")

    @property
    def protocol(self) -> int:
        return protocol.V1 if self.embeddings is None else protocol.V2

    @property
    def leaves(self) -> int:
        return len(self.token_ids)

    @property
    def text(self) -> str:
        return "".join(self.block_texts)

    def leaf_hashes(self) -> list[bytes]:
        if self.embeddings is None or self.embedding_model is None:
            return _leaf_hashes(self.salt, self.block_size, self.token_ids, self.block_texts)
        return leaf_hashes_v2(
            self.salt,
            self.block_size,
            self.token_ids,
            self.block_texts,
            self.embedding_model,
            self.embeddings,
        )

    def tree(self) -> MerkleTree:
        return MerkleTree(self.leaf_hashes())

    def commitment(self) -> Commitment:
        root = self.tree().root.hex()
        if self.embeddings is None:
            return Commitment(root=root, leaves=self.leaves)
        return Commitment(
            root=root,
            leaves=self.leaves,
            protocol=protocol.V2,
            block_size=self.block_size,
            embedding=self.embedding_model,
        )

    def open_block(
        self, position: int, tree: MerkleTree | None = None, *, full: bool = False
    ) -> BlockOpening:
        """Version 2: open one position by its block's embedding; ``full`` adds ids and text."""
        if self.embeddings is None:
            raise ValueError("a version-1 opening has no embeddings; use open_leaf")
        if not 0 <= position < self.leaves:
            raise ValueError(f"position {position} out of range for {self.leaves} leaves")
        tree = tree or self.tree()
        block = position // self.block_size
        start = block * self.block_size
        ids = self.token_ids[start : start + self.block_size]
        key = protocol.text_key(self.salt, block)
        return BlockOpening(
            position=position,
            block_start=start,
            count=len(ids),
            salt=block_salt(self.salt, block),
            content=protocol.content_commitment(key, start, ids, self.block_texts[block]),
            embedding=self.embeddings[block],
            proof=tuple(tree.proof(position)),
            text_key=key if full else None,
            token_ids=ids if full else None,
            text=self.block_texts[block] if full else None,
        )

    def with_embeddings(self, model: str, embed: EmbedBlocks) -> Opening:
        """This opening as version 2: each block's text embedded by ``embed`` under ``model``."""
        embeddings = tuple(bytes(e) for e in embed(self.block_texts)) if self.block_texts else ()
        return Opening(
            salt=self.salt,
            block_size=self.block_size,
            token_ids=self.token_ids,
            block_texts=self.block_texts,
            embedding_model=model,
            embeddings=embeddings,
        )

    def open_leaf(self, position: int, tree: MerkleTree | None = None) -> LeafOpening:
        """Open one leaf; pass the ``tree`` when opening several leaves of one request."""
        if not 0 <= position < self.leaves:
            raise ValueError(f"position {position} out of range for {self.leaves} leaves")
        tree = tree or self.tree()
        block = position // self.block_size
        start = block * self.block_size
        return LeafOpening(
            position=position,
            token_id=self.token_ids[position],
            salt=block_salt(self.salt, block),
            block_start=start,
            block_token_ids=self.token_ids[start : start + self.block_size],
            block_text=self.block_texts[block],
            proof=tuple(tree.proof(position)),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": self.protocol,
            "salt": self.salt.hex(),
            "block_size": self.block_size,
            "token_ids": list(self.token_ids),
            "block_texts": list(self.block_texts),
        }
        if self.embeddings is not None:
            data["embedding_model"] = self.embedding_model
            data["embeddings"] = [e.hex() for e in self.embeddings]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Opening:
        embeddings = data.get("embeddings")
        model = data.get("embedding_model")
        return cls(
            salt=bytes.fromhex(data["salt"]),
            block_size=int(data["block_size"]),
            token_ids=tuple(int(t) for t in data["token_ids"]),
            block_texts=tuple(str(t) for t in data["block_texts"]),
            embedding_model=None if model is None else str(model),
            embeddings=None if embeddings is None else tuple(bytes.fromhex(e) for e in embeddings),
        )


class HiddenCommitter:
    """Collects one request's hidden tokens in stream order and commits to them.

    >>> c = HiddenCommitter(block_size=2, salt=bytes(32))
    >>> c.add([101], "Let")
    >>> c.add([102, 103], " me think")
    >>> c.commit().leaves
    3
    >>> c.opening().block_texts
    ('Let me think', '')
    """

    __slots__ = ("_cached", "_embedded", "_ids", "_texts", "block_size", "salt")

    def __init__(self, block_size: int = DEFAULT_BLOCK_SIZE, salt: bytes | None = None) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if salt is None:
            salt = secrets.token_bytes(SALT_SIZE)
        if len(salt) != SALT_SIZE:
            raise ValueError(f"salt must be {SALT_SIZE} bytes, got {len(salt)}")
        self.block_size = block_size
        self.salt = salt
        self._ids = array("I")  # C array: compact, and rejects ids outside 0..2**32-1
        self._texts: list[list[str]] = []  # per block, the texts of the chunks it owns
        self._cached: tuple[Opening, Commitment | None] | None = None  # until the next add
        self._embedded: Opening | None = None  # version 2, once fingerprint() ran

    @property
    def leaves(self) -> int:
        return len(self._ids)

    def add(self, token_ids: Sequence[int], text: str) -> None:
        """Append hidden tokens in stream order; ``text`` is the decoded text of these tokens."""
        self._cached = None
        self._embedded = None
        first = len(self._ids)
        if token_ids:
            try:
                checked = array("I", token_ids)  # all or nothing: extend() stops half-way
            except OverflowError as exc:
                raise ValueError(f"token ids must be in 0..2**32-1: {exc}") from exc
            self._ids.extend(checked)
        elif first:
            first -= 1  # text without tokens belongs with the token before it
        if text:
            block = first // self.block_size
            texts = self._texts
            while len(texts) <= block:
                texts.append([])
            texts[block].append(text)

    def fingerprint(self, model: str, embed: EmbedBlocks) -> None:
        """Commit version 2 from now on: embed every block's text (CPU-heavy: off the loop)."""
        self._embedded = self._build_opening().with_embeddings(model, embed)
        self._cached = None

    def opening(self) -> Opening:
        """What an auditor needs later; store it, never send it to the client."""
        if self._cached is None:
            self._cached = (self._embedded or self._build_opening(), None)
        return self._cached[0]

    def _build_opening(self) -> Opening:
        blocks = -(-len(self._ids) // self.block_size)
        texts = ["".join(parts) for parts in self._texts[:blocks]]
        texts.extend("" for _ in range(blocks - len(texts)))
        return Opening(
            salt=self.salt,
            block_size=self.block_size,
            token_ids=tuple(self._ids),
            block_texts=tuple(texts),
        )

    def commit(self) -> Commitment:
        """Root and leaf count over everything added so far (``Commitment.empty()`` for none)."""
        if not self._ids:
            return Commitment.empty()
        opening = self.opening()
        cached = self._cached
        if cached is not None and cached[1] is not None:
            return cached[1]
        commitment = opening.commitment()
        self._cached = (opening, commitment)
        return commitment
