"""RFC 6962 Merkle trees: published vectors, a naive reference, and every proof up to 300."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairgate.metering.errors import InvalidProofError, ProofError, RootMismatchError
from fairgate.metering.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    compute_root,
    hash_children,
    hash_leaf,
    inclusion_proof,
    root_from_inclusion_proof,
    verify_inclusion,
)

# --- a deliberately naive reference: RFC 6962 §2.1 read literally ------------------------------


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) over leaf *data*."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _split(len(leaves))
    return hashlib.sha256(b"\x01" + ref_root(leaves[:k]) + ref_root(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_root(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_root(leaves[:k])]


def data(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


# --- published vectors -------------------------------------------------------------------------
# transparency-dev/merkle rfc6962/rfc6962_test.go and proof/verify_test.go (the leaves and roots
# there are the RFC 6962 reference test data from Certificate Transparency).

VECTOR_LEAVES = [
    b"",
    bytes.fromhex("00"),
    bytes.fromhex("10"),
    bytes.fromhex("2021"),
    bytes.fromhex("3031"),
    bytes.fromhex("40414243"),
    bytes.fromhex("5051525354555657"),
    bytes.fromhex("606162636465666768696a6b6c6d6e6f"),
]
VECTOR_ROOTS = [  # root of the first n leaves, n = 1..8
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
VECTOR_PROOFS = [  # (leaf index, tree size, audit path)
    (0, 8, [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]),
    (5, 8, [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]),
]  # fmt: skip


def test_hasher_vectors() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert hash_leaf(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert hash_leaf(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert hash_children(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_empty_tree_root_is_not_the_empty_leaf() -> None:
    assert compute_root([]) == EMPTY_ROOT
    assert compute_root([]) != hash_leaf(b"")


@pytest.mark.parametrize("size", range(1, 9))
def test_root_vectors(size: int) -> None:
    leaves = [hash_leaf(d) for d in VECTOR_LEAVES[:size]]
    assert compute_root(leaves).hex() == VECTOR_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), VECTOR_PROOFS)
def test_proof_vectors(index: int, size: int, path: list[str]) -> None:
    leaves = [hash_leaf(d) for d in VECTOR_LEAVES[:size]]
    assert [p.hex() for p in inclusion_proof(leaves, index)] == path
    root = bytes.fromhex(VECTOR_ROOTS[size - 1])
    verify_inclusion(leaves[index], index, size, [bytes.fromhex(p) for p in path], root)


def test_no_duplicate_leaf_padding() -> None:
    a, b, c = (hash_leaf(x) for x in (b"a", b"b", b"c"))
    assert compute_root([a, b, c]) == hash_children(hash_children(a, b), c)
    assert compute_root([a, b, c]) != compute_root([a, b, c, c])


# --- against the naive reference ---------------------------------------------------------------


@pytest.mark.parametrize("size", [*range(0, 70), 127, 128, 129, 255, 256, 257, 300, 1000])
def test_root_matches_reference(size: int) -> None:
    leaves = data(size)
    assert compute_root([hash_leaf(d) for d in leaves]) == ref_root(leaves)


def test_every_proof_of_sizes_1_to_300_verifies_and_matches_reference() -> None:
    for size in range(1, 301):
        leaves = data(size)
        tree = MerkleTree([hash_leaf(d) for d in leaves])
        assert tree.root == ref_root(leaves)
        for index in range(size):
            proof = tree.proof(index)
            verify_inclusion(hash_leaf(leaves[index]), index, size, proof, tree.root)
            if size <= 64:  # the reference is slow: compare paths on the smaller trees
                assert proof == ref_path(index, leaves)


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=80), st.data())
def test_property_proof_verifies_and_matches_reference(
    leaves: list[bytes], draw: st.DataObject
) -> None:
    index = draw.draw(st.integers(0, len(leaves) - 1))
    hashes = [hash_leaf(d) for d in leaves]
    tree = MerkleTree(hashes)
    assert tree.root == ref_root(leaves)
    assert tree.proof(index) == ref_path(index, leaves)
    assert root_from_inclusion_proof(hashes[index], index, len(leaves), tree.proof(index)) == (
        tree.root
    )


# --- what must fail ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 3, 5, 8, 13, 64, 300])
def test_proof_for_a_different_leaf_or_root_fails(size: int) -> None:
    hashes = [hash_leaf(d) for d in data(size)]
    tree = MerkleTree(hashes)
    for index in range(size):
        proof = tree.proof(index)
        other = (index + 1) % size
        with pytest.raises(RootMismatchError):
            verify_inclusion(hashes[other], index, size, proof, tree.root)
        with pytest.raises(RootMismatchError):
            verify_inclusion(hash_leaf(b"forged"), index, size, proof, tree.root)
        with pytest.raises(RootMismatchError):
            verify_inclusion(hashes[index], index, size, proof, EMPTY_ROOT)


def _corruptions(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes):  # type: ignore[no-untyped-def]
    """The probes of transparency-dev's corruptInclusionProof, as (description, args)."""
    some = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    yield "index - 1", (leaf, index - 1, size, proof, root)
    yield "index + 1", (leaf, index + 1, size, proof, root)
    yield "index ^ 2", (leaf, index ^ 2, size, proof, root)
    yield "size * 2", (leaf, index, size * 2, proof, root)
    yield "size // 2", (leaf, index, size // 2, proof, root)
    yield "wrong leaf", (hash_leaf(b"WrongLeaf"), index, size, proof, root)
    yield "empty root", (leaf, index, size, proof, EMPTY_ROOT)
    yield "random root", (leaf, index, size, proof, some)
    yield "trailing root", (leaf, index, size, [*proof, root], root)
    yield "preceding root", (leaf, index, size, [root, *proof], root)
    yield "trailing garbage", (leaf, index, size, [*proof, b""], root)
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        yield f"proof[{i}] bit flipped", (leaf, index, size, flipped, root)
    if proof:
        yield "removed element", (leaf, index, size, proof[:-1], root)
    if len(proof) > 1:
        yield "inserted element", (leaf, index, size, [proof[0], some, *proof[1:]], root)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9, 31, 100])
def test_corrupted_proofs_fail(size: int) -> None:
    hashes = [hash_leaf(d) for d in data(size)]
    tree = MerkleTree(hashes)
    for index in range(size):
        probes = _corruptions(index, size, tree.proof(index), tree.root, hashes[index])
        for description, args in probes:
            with pytest.raises(ProofError):
                verify_inclusion(*args)
                pytest.fail(f"size {size} index {index}: {description} verified")


def test_malformed_proofs_raise_invalid_proof() -> None:
    leaf = hash_leaf(b"x")
    with pytest.raises(InvalidProofError):
        verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)
    with pytest.raises(InvalidProofError):
        verify_inclusion(leaf, 1, 1, [], leaf)
    with pytest.raises(InvalidProofError):
        verify_inclusion(leaf, 0, 1, [leaf], leaf)  # too long
    with pytest.raises(InvalidProofError):
        verify_inclusion(leaf, 0, 2, [], leaf)  # too short
    with pytest.raises(InvalidProofError):
        verify_inclusion(b"short", 0, 1, [], leaf)


def test_single_leaf_tree() -> None:
    leaf = hash_leaf(b"data")
    assert compute_root([leaf]) == leaf
    verify_inclusion(leaf, 0, 1, [], leaf)


def test_root_mismatch_carries_both_roots() -> None:
    hashes = [hash_leaf(d) for d in data(4)]
    tree = MerkleTree(hashes)
    with pytest.raises(RootMismatchError) as caught:
        verify_inclusion(hashes[0], 0, 4, tree.proof(0), EMPTY_ROOT)
    assert caught.value.expected == EMPTY_ROOT
    assert caught.value.computed == tree.root


def test_proof_index_out_of_range() -> None:
    with pytest.raises(ValueError):
        MerkleTree([hash_leaf(b"a")]).proof(1)
    with pytest.raises(ValueError):
        MerkleTree([]).proof(0)
