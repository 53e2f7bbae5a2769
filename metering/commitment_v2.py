"""Version 2 of the commitment (see :mod:`metering.protocol`): leaves over block digests that
bind a keyed content commitment and the block's quantized embedding, and the opening of one
position by its block's embedding (ids and text only when the tenant consented).

Pure: hashlib and struct only.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fairgate.metering import protocol
from fairgate.metering.merkle import hash_leaf
from fairgate.metering.protocol import block_salt

_LEAF_V2 = struct.Struct(">33sQ32s")  # 0x00 || salt, position, block digest
_sha256 = hashlib.sha256


def leaf_hashes_v2(
    secret: bytes,
    block_size: int,
    token_ids: Sequence[int],
    block_texts: Sequence[str],
    model: str,
    embeddings: Sequence[bytes],
) -> list[bytes]:
    pack, sha = _LEAF_V2.pack, _sha256
    leaves: list[bytes] = []
    for block, (text, embedding) in enumerate(zip(block_texts, embeddings, strict=True)):
        start = block * block_size
        ids = token_ids[start : start + block_size]
        content = protocol.content_commitment(protocol.text_key(secret, block), start, ids, text)
        digest = protocol.block_digest(start, len(ids), content, model, embedding)
        prefix = b"\x00" + block_salt(secret, block)
        leaves.extend(sha(pack(prefix, p, digest)).digest() for p in range(start, start + len(ids)))
    return leaves


@dataclass(frozen=True, slots=True)
class BlockOpening:
    """Version 2: one hidden position opened by its block's embedding (and, if full, its text).

    Embeddings-only by default: ``text_key``, ``token_ids`` and ``text`` are ``None`` and nothing
    in it reveals the block's tokens (see :mod:`metering.protocol`).
    """

    position: int
    block_start: int
    count: int
    salt: bytes
    content: bytes
    embedding: bytes
    proof: tuple[bytes, ...]
    text_key: bytes | None = None
    token_ids: tuple[int, ...] | None = None
    text: str | None = None

    @property
    def full(self) -> bool:
        return self.text_key is not None

    def leaf(self, model: str) -> bytes:
        digest = protocol.block_digest(
            self.block_start, self.count, self.content, model, self.embedding
        )
        return hash_leaf(protocol.v2_leaf_data(self.salt, self.position, digest))

    def content_matches(self) -> bool:
        """A full opening's ids and text rebuild ``content``; ``False`` for embeddings-only."""
        if self.text_key is None or self.token_ids is None or self.text is None:
            return False
        if len(self.token_ids) != self.count:
            return False
        rebuilt = protocol.content_commitment(
            self.text_key, self.block_start, self.token_ids, self.text
        )
        return rebuilt == self.content

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "position": self.position,
            "block_start": self.block_start,
            "count": self.count,
            "salt": self.salt.hex(),
            "content": self.content.hex(),
            "embedding": self.embedding.hex(),
            "proof": [element.hex() for element in self.proof],
        }
        if self.text_key is not None:
            data["text_key"] = self.text_key.hex()
            data["token_ids"] = list(self.token_ids or ())
            data["text"] = self.text
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockOpening:
        key = data.get("text_key")
        ids = data.get("token_ids")
        text = data.get("text")
        return cls(
            position=int(data["position"]),
            block_start=int(data["block_start"]),
            count=int(data["count"]),
            salt=bytes.fromhex(str(data["salt"])),
            content=bytes.fromhex(str(data["content"])),
            embedding=bytes.fromhex(str(data["embedding"])),
            proof=tuple(bytes.fromhex(str(element)) for element in data["proof"]),
            text_key=None if key is None else bytes.fromhex(str(key)),
            token_ids=None if ids is None else tuple(int(t) for t in ids),
            text=None if text is None else str(text),
        )
