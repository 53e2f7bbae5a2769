"""Checking the opened leaves (protocol 1) and blocks (protocol 2) of an audit answer.

Each opening is checked for its layout, that it rebuilds the committed leaf, and its inclusion
proof; a position that passes all of them is marked verified. Pure: hashing and data only.
"""

from __future__ import annotations

from collections.abc import Sequence

from fairgate.metering.audit import OpenedBlock, OpenedLeaf
from fairgate.metering.audit_report import Findings, Reason
from fairgate.metering.commitment import Commitment, block_fingerprint, leaf_data
from fairgate.metering.errors import ProofError
from fairgate.metering.merkle import hash_leaf, verify_inclusion


def check_opening(
    report: Findings,
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
    if not _proven(report, commitment, leaf, position, o.proof):
        return
    report.verified.add(position)


def check_block(
    report: Findings,
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
    if not _proven(report, commitment, leaf, position, o.proof):
        return
    report.verified.add(position)
    report.keep(start, count, o.embedding, o.text)
    if o.full and o.token_ids is not None and o.text is not None:
        blocks.setdefault(start, (o.token_ids, o.text))


def short(values: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return f"[{shown}{', …' if len(values) > limit else ''}]"


def _proven(
    report: Findings, commitment: Commitment, leaf: bytes, position: int, proof: Sequence[bytes]
) -> bool:
    """Whether ``leaf`` is at ``position`` of the committed tree; a bad proof is a finding."""
    try:
        verify_inclusion(leaf, position, commitment.leaves, proof, bytes.fromhex(commitment.root))
    except ProofError as exc:
        report.add(Reason.BAD_PROOF, f"at tree size {commitment.leaves}: {exc}", position)
        return False
    return True
