"""The hidden-token commitment protocol, every version in one place.

A record's ``commitment`` names its version in ``protocol`` (absent means 1). Both versions
share the tree (RFC 6962 over one leaf per hidden token, :mod:`metering.merkle`), the block
layout (``block_size`` consecutive positions per block) and the per-block leaf salt
``salt_b = SHA-256("fairgate/block-salt/v1\\0" || secret || u64 b)`` from the request's 32-byte
secret. They differ in what a leaf binds and so in what an opening must reveal:

**Version 1** (records before embedding fingerprints; still verified)::

    fingerprint_b = SHA-256("fairgate/hidden-block/v1\\0" || u64 start || u32 count
                            || u32 ids... || UTF-8 text)
    leaf_i        = SHA-256(0x00 || salt_b || u64 i || u32 token_id_i || fingerprint_b)

An opening shows the block's ids and text: the auditor reads the reasoning.

**Version 2** (embedding fingerprints; CoIn, arXiv 2505.13778)::

    text_key_b = SHA-256("fairgate/block-text-key/v2\\0" || secret || u64 b)   (never in an
                 embeddings-only opening)
    content_b  = SHA-256("fairgate/block-content/v2\\0" || text_key_b || u64 start || u32 count
                         || u32 ids... || UTF-8 text)
    embedding_b = int8 quantization of the unit sentence embedding of the block's text:
                 round(127 * v), clipped to -127..127, ``dim`` bytes
    digest_b   = SHA-256("fairgate/hidden-block/v2\\0" || u64 start || u32 count || content_b
                         || u16 len(model) || model (UTF-8) || u16 dim || embedding_b)
    leaf_i     = SHA-256(0x00 || salt_b || u64 i || digest_b)

The record's commitment carries ``protocol: 2``, ``block_size`` and ``embedding`` (the model id,
e.g. ``all-MiniLM-L6-v2-onnx-int8``). An **embeddings-only** opening (the default) gives
position, block start and count, ``salt_b``, ``content_b``, ``embedding_b`` and the inclusion
proof: the auditor rebuilds ``digest_b`` and the leaf and checks the proof, and learns the
block's embedding but neither its ids nor its text (``content_b`` is keyed by ``text_key_b``,
32 secret bytes, so it cannot be tested against guessed text). A **full** opening, given only for
a tenant that consented, adds ``text_key_b``, the ids and the text: the auditor rebuilds
``content_b`` as well and can re-embed the text and compare it with ``embedding_b`` (which it
otherwise takes on the provider's word; see :mod:`metering.semantic`).

Pure: hashlib and struct only.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from array import array
from collections.abc import Sequence

V1 = 1
V2 = 2
SUPPORTED = (V1, V2)
BLOCK_SALT_DOMAIN = b"fairgate/block-salt/v1\x00"
_V1_BLOCK = b"fairgate/hidden-block/v1\x00"
_V2_BLOCK = b"fairgate/hidden-block/v2\x00"
_V2_TEXT_KEY = b"fairgate/block-text-key/v2\x00"
_V2_CONTENT = b"fairgate/block-content/v2\x00"
_U64_U32 = struct.Struct(">QI")
_U16 = struct.Struct(">H")
_sha256 = hashlib.sha256
QUANT_SCALE = 127


def ids_bytes(token_ids: Sequence[int]) -> bytes:
    packed = array("I", token_ids)
    if sys.byteorder == "little":
        packed.byteswap()
    return packed.tobytes()


def block_salt(secret: bytes, block: int) -> bytes:
    """The salt of one block's leaves (both versions); revealed by any opening of the block."""
    return _sha256(BLOCK_SALT_DOMAIN + secret + block.to_bytes(8, "big")).digest()


# -- version 1 ----------------------------------------------------------------------------------


def v1_fingerprint(start: int, token_ids: Sequence[int], text: str) -> bytes:
    header = _U64_U32.pack(start, len(token_ids))
    return _sha256(_V1_BLOCK + header + ids_bytes(token_ids) + text.encode()).digest()


def v1_leaf_data(salt: bytes, position: int, token_id: int, fingerprint: bytes) -> bytes:
    return salt + _U64_U32.pack(position, token_id) + fingerprint


# -- version 2 ----------------------------------------------------------------------------------


def text_key(secret: bytes, block: int) -> bytes:
    """The key that hides a block's ids and text; revealed only by a full opening."""
    return _sha256(_V2_TEXT_KEY + secret + block.to_bytes(8, "big")).digest()


def content_commitment(key: bytes, start: int, token_ids: Sequence[int], text: str) -> bytes:
    header = _U64_U32.pack(start, len(token_ids))
    return _sha256(_V2_CONTENT + key + header + ids_bytes(token_ids) + text.encode()).digest()


def block_digest(start: int, count: int, content: bytes, model: str, embedding: bytes) -> bytes:
    name = model.encode()
    return _sha256(
        _V2_BLOCK
        + _U64_U32.pack(start, count)
        + content
        + _U16.pack(len(name))
        + name
        + _U16.pack(len(embedding))
        + embedding
    ).digest()


def v2_leaf_data(salt: bytes, position: int, digest: bytes) -> bytes:
    return salt + position.to_bytes(8, "big") + digest


def quantize(vector: Sequence[float]) -> bytes:
    """int8 bytes of a unit vector: round(127 v), clipped; the committed embedding."""
    values = [max(-QUANT_SCALE, min(QUANT_SCALE, round(QUANT_SCALE * x))) for x in vector]
    return array("b", values).tobytes()


def dequantize(data: bytes) -> list[float]:
    return [v / QUANT_SCALE for v in array("b", data)]
