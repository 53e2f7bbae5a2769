"""RFC 6962 (Certificate Transparency) Merkle trees over SHA-256.

Hashing, following RFC 6962 §2.1 (and RFC 9162 §2.1)::

    MTH({})      = SHA-256()                          the empty tree
    leaf hash    = SHA-256(0x00 || d)
    node hash    = SHA-256(0x01 || left || right)
    MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = largest power of two < n

There is no padding with duplicate leaves (the Bitcoin mistake that lets two leaf lists share a
root). Example, five leaves a..e::

             root
            /    \\
         abcd     e          e is promoted unchanged: it has no sibling at levels 0 and 1
        /    \\
      ab      cd
     /  \\    /  \\
    a    b  c    d

Building level by level and promoting a level's odd last node gives exactly the tree of the
recursive definition (the split at the largest power of two puts every complete pair on the
left), which is what :class:`MerkleTree` does; the tests check it against the recursive
definition and the transparency-dev test vectors.

This module is pure: hashlib only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from fairgate.metering.errors import InvalidProofError, RootMismatchError

ALG = "rfc6962-sha256"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


def hash_leaf(data: bytes) -> bytes:
    """Leaf hash: SHA-256(0x00 || data)."""
    return _sha256(_LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """Interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


class MerkleTree:
    """All levels of the tree over ``leaf_hashes``, for its root and any number of proofs.

    ``levels[0]`` are the leaf hashes, ``levels[-1]`` is ``[root]``. Memory is about twice the
    leaves. A tree of zero leaves has the empty root and no proofs.
    """

    __slots__ = ("levels",)

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        level = list(leaf_hashes)
        levels = [level]
        sha, prefix = _sha256, _NODE_PREFIX
        while len(level) > 1:
            pairs = iter(level)  # zip(pairs, pairs) yields (level[0], level[1]), (level[2], ...)
            upper = [
                sha(prefix + left + right).digest()
                for left, right in zip(pairs, pairs, strict=False)
            ]
            if len(level) & 1:
                upper.append(level[-1])  # promoted: no duplicate-leaf padding
            levels.append(upper)
            level = upper
        self.levels = levels

    @property
    def size(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.levels[0] else EMPTY_ROOT

    def proof(self, index: int) -> list[bytes]:
        """Audit path of leaf ``index``, from the leaf's sibling up to the root's child."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf index {index} out of range for tree size {self.size}")
        path: list[bytes] = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path


def compute_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Root of the tree over ``leaf_hashes`` (``EMPTY_ROOT`` for none)."""
    return MerkleTree(leaf_hashes).root


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path of one leaf; build a :class:`MerkleTree` once when proving many leaves."""
    return MerkleTree(leaf_hashes).proof(index)


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` leads to from leaf ``index`` of a tree of ``size`` leaves.

    RFC 9162 §2.1.3.2: walk up with ``fn`` (the node's index) and ``sn`` (the last index at this
    level); a node that is a right child, or the promoted last node, takes the proof element on
    its left, and a promoted node skips the levels where it has no sibling.
    Raises :class:`InvalidProofError` when the proof cannot belong to such a leaf.
    """
    if not 0 <= index < size:
        raise InvalidProofError(f"leaf index {index} out of range for tree size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise InvalidProofError(f"leaf hash has {len(leaf_hash)} bytes, want {HASH_SIZE}")
    fn, sn, node = index, size - 1, leaf_hash
    for position, element in enumerate(proof):
        if sn == 0:
            raise InvalidProofError(f"proof too long: {len(proof)} elements, used {position}")
        if len(element) != HASH_SIZE:
            raise InvalidProofError(f"proof[{position}] has {len(element)} bytes")
        if fn & 1 or fn == sn:
            node = hash_children(element, node)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            node = hash_children(node, element)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProofError(f"proof too short: {len(proof)} elements")
    return node


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Returns nothing on success; raises :class:`InvalidProofError` for a malformed proof and
    :class:`RootMismatchError` for a proof that leads elsewhere.
    """
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != root:
        raise RootMismatchError(expected=root, computed=computed)
