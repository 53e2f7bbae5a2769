"""Hidden-token commitments: blocks, salts, openings an auditor can check."""

from __future__ import annotations

import doctest
import hashlib
import struct
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairgate import metering
from fairgate.metering.commitment import (
    Commitment,
    HiddenCommitter,
    LeafOpening,
    Opening,
    block_fingerprint,
    verify_leaf_opening,
)
from fairgate.metering.errors import CommitmentError, ProofError
from fairgate.metering.merkle import EMPTY_ROOT, compute_root, hash_leaf

SALT = bytes(range(32))


def committer_with(n: int, block_size: int = 4, salt: bytes = SALT) -> HiddenCommitter:
    committer = HiddenCommitter(block_size=block_size, salt=salt)
    for i in range(n):
        committer.add([100 + i], f"t{i}")
    return committer


def test_docstring_example() -> None:
    assert doctest.testmod(metering.commitment).failed == 0


def test_zero_hidden_tokens_commit_to_the_empty_root() -> None:
    commitment = HiddenCommitter().commit()
    assert commitment == Commitment.empty()
    assert commitment.leaves == 0
    assert commitment.root == EMPTY_ROOT.hex() == hashlib.sha256(b"").hexdigest()
    assert commitment.alg == "rfc6962-sha256"
    assert HiddenCommitter().opening().block_texts == ()


def test_leaf_is_rfc6962_hash_of_block_salt_position_token_and_fingerprint() -> None:
    committer = committer_with(6, block_size=4)
    opening = committer.opening()
    assert opening.block_texts == ("t0t1t2t3", "t4t5")
    fp0 = hashlib.sha256(
        b"fairgate/hidden-block/v1\x00" + struct.pack(">QI", 0, 4)
        + struct.pack(">4I", 100, 101, 102, 103) + b"t0t1t2t3"
    ).digest()  # fmt: skip
    fp1 = block_fingerprint(4, (104, 105), "t4t5")
    salts = [
        hashlib.sha256(b"fairgate/block-salt/v1\x00" + SALT + block.to_bytes(8, "big")).digest()
        for block in (0, 1)
    ]
    expected = [
        hashlib.sha256(b"\x00" + salts[i // 4] + struct.pack(">QI", i, 100 + i)
                       + (fp0 if i < 4 else fp1)).digest()
        for i in range(6)
    ]  # fmt: skip
    assert opening.leaf_hashes() == expected
    assert committer.commit() == Commitment(root=compute_root(expected).hex(), leaves=6)


def test_chunk_text_belongs_to_the_block_of_its_first_token() -> None:
    committer = HiddenCommitter(block_size=2, salt=SALT)
    committer.add([], "pre ")  # text before any token: with the first token
    committer.add([1], "a")
    committer.add([2, 3], "bc")  # straddles blocks 0 and 1: text stays in block 0
    committer.add([], "!")  # no tokens: with the token before (position 2, block 1)
    committer.add([4, 5], "de")  # positions 3 and 4: text with position 3, block 1
    opening = committer.opening()
    assert opening.block_texts == ("pre abc", "!de", "")
    assert opening.text == "pre abc!de"
    assert opening.token_ids == (1, 2, 3, 4, 5)


def test_commitment_depends_on_salt_ids_text_and_order() -> None:
    base = committer_with(10).commit()
    assert committer_with(10, salt=bytes(32)).commit().root != base.root
    changed_text = committer_with(10)
    changed_text.add([], "x")
    assert changed_text.commit().root != base.root
    swapped = HiddenCommitter(block_size=4, salt=SALT)
    for i in (1, 0, *range(2, 10)):
        swapped.add([100 + i], f"t{i}")
    assert swapped.commit().root != base.root
    assert committer_with(10).commit() == base  # deterministic for a given salt


def test_random_salt_by_default() -> None:
    assert HiddenCommitter().salt != HiddenCommitter().salt
    assert len(HiddenCommitter().salt) == 32


@pytest.mark.parametrize("block_size", [1, 3, 16])
@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 50])
def test_every_leaf_opens_and_verifies(block_size: int, n: int) -> None:
    committer = committer_with(n, block_size)
    commitment = committer.commit()
    opening = committer.opening()
    tree = opening.tree()
    for position in range(n):
        opened = opening.open_leaf(position, tree)
        verify_leaf_opening(commitment, opened)
        assert LeafOpening.from_dict(opened.to_dict()) == opened


def test_tampered_openings_fail() -> None:
    committer = committer_with(20)
    commitment = committer.commit()
    opened = committer.opening().open_leaf(9)
    tampered = [
        replace(opened, token_id=7),
        replace(opened, block_text=opened.block_text + "x"),
        replace(opened, block_token_ids=(1, 2, 3, 4)),
        replace(opened, salt=bytes(32)),
        replace(opened, position=10),
        replace(opened, block_start=9),
        replace(opened, proof=opened.proof[:-1]),
    ]
    for bad in tampered:
        with pytest.raises((CommitmentError, ProofError)):
            verify_leaf_opening(commitment, bad)


def test_opening_the_last_leaf_pins_the_leaf_count() -> None:
    # A proof for a leaf inside a complete left subtree verifies under several tree sizes, which
    # is why an auditor always opens the last position too: its proof fixes the size.
    committer = committer_with(20)
    commitment = committer.commit()
    opening = committer.opening()
    last = opening.open_leaf(19)
    verify_leaf_opening(commitment, last)
    for claimed in (19, 21, 24, 32, 40):
        with pytest.raises(ProofError):
            verify_leaf_opening(Commitment(root=commitment.root, leaves=claimed), last)
    with pytest.raises(ValueError):
        opening.open_leaf(20)


def test_opening_round_trips_and_recomputes_the_commitment() -> None:
    committer = committer_with(33, block_size=8)
    opening = committer.opening()
    again = Opening.from_dict(opening.to_dict())
    assert again == opening
    assert again.commitment() == committer.commit()
    assert Commitment.from_dict(committer.commit().to_dict()) == committer.commit()


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        HiddenCommitter(block_size=0)
    with pytest.raises(ValueError):
        HiddenCommitter(salt=b"short")
    committer = HiddenCommitter()
    with pytest.raises(ValueError):
        committer.add([-1], "x")
    with pytest.raises(ValueError):
        committer.add([2**32], "x")
    with pytest.raises(ValueError):
        Opening(salt=SALT, block_size=4, token_ids=(1, 2), block_texts=())


@given(
    st.lists(
        st.tuples(st.lists(st.integers(0, 2**32 - 1), max_size=5), st.text(max_size=6)),
        max_size=30,
    ),
    st.integers(1, 8),
)
def test_property_chunks_keep_order_text_and_verify(
    chunks: list[tuple[list[int], str]], block_size: int
) -> None:
    committer = HiddenCommitter(block_size=block_size, salt=SALT)
    for ids, text in chunks:
        committer.add(ids, text)
    opening = committer.opening()
    all_ids = [token for ids, _ in chunks for token in ids]
    assert list(opening.token_ids) == all_ids
    if all_ids:  # with no tokens there is nothing to commit the text to
        assert opening.text == "".join(text for _, text in chunks)
    commitment = committer.commit()
    assert commitment.leaves == len(all_ids)
    assert hash_leaf(b"") not in opening.leaf_hashes()
    if all_ids:
        tree = opening.tree()
        verify_leaf_opening(commitment, opening.open_leaf(len(all_ids) - 1, tree))


def test_an_opened_leaf_reveals_only_its_own_blocks_salt() -> None:
    opening = committer_with(8, block_size=2).opening()
    salts = {opening.open_leaf(position).salt for position in range(8)}
    assert len(salts) == 4 and opening.salt not in salts
    assert opening.open_leaf(0).salt == opening.open_leaf(1).salt
