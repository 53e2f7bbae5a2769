"""The auditor's sequential sampling over one request's committed blocks, at block level.

It uses the product's own pieces: :func:`metering.audit.sample_positions` for the positions each
round opens (fresh nonce per round), :mod:`metering.semantic` for the statistics and findings,
the committed int8 embeddings (dequantized as the auditor does). Only the Merkle proofs are left
out here; ``bench/audit/run.py`` runs the whole protocol on a subset to check the two agree.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fairgate.metering import semantic
from fairgate.metering.audit import sample_positions
from fairgate.metering.auditor import MAX_ROUNDS, next_round
from fairgate.metering.block_classifier import BlockClassifier, Evidence


@dataclass(frozen=True, slots=True)
class Outcome:
    flagged: bool
    opened: int
    rounds: int
    looks: tuple[semantic.Statistics, ...]
    evidence: Evidence = field(default_factory=Evidence)  # each statistic's most over the looks


Judge = Callable[
    [list[int], np.ndarray], tuple[bool, "Evidence | None", "semantic.Statistics | None"]
]


def cutoffs(context: np.ndarray, block_size: int, thresholds: semantic.Thresholds) -> Judge:
    """The fixed per-statistic cut-offs of :mod:`metering.semantic` (the previous audit)."""

    def look(index: list[int], vectors: np.ndarray) -> tuple[bool, Any, Any]:
        stats = semantic.statistics(index, vectors, context[0], context[1], thresholds)
        return bool(semantic.findings(stats, thresholds, block_size)), None, stats

    return look


def learned(context: np.ndarray, total: int, model: BlockClassifier) -> Judge:
    """The learned block classifier and the lone-copies count."""

    def look(index: list[int], vectors: np.ndarray) -> tuple[bool, Any, Any]:
        evidence, found = model.judge(index, total, vectors, context[0], context[1])
        return bool(found), evidence, None

    return look


def sequential(
    request_id: str,
    vectors: np.ndarray,
    block_size: int,
    samples: int,
    judge: Judge,
    seed: bytes,
    max_blocks: int | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> Outcome:
    blocks = len(vectors)
    leaves = blocks * block_size
    opened: set[int] = set()
    looks: list[semantic.Statistics] = []
    asked = rounds = 0
    evidence = Evidence()
    while rounds < max_rounds:
        take = next_round(samples, max_blocks, len(opened), asked)
        if take <= 0:
            break
        nonce = hashlib.sha256(seed + rounds.to_bytes(4, "big")).digest()
        opened.update(p // block_size for p in sample_positions(nonce, request_id, leaves, take))
        asked += take
        rounds += 1
        index = sorted(opened)
        flagged, seen, stats = judge(index, vectors[index])
        if seen is not None:
            evidence = evidence.most(seen)
        if stats is not None:
            looks.append(stats)
        if flagged:
            return Outcome(True, len(opened), rounds, tuple(looks), evidence)
        if len(opened) >= blocks:
            break
    return Outcome(False, len(opened), rounds, tuple(looks), evidence)


BUCKETS = (1, 4, 8, 12, 16, 24, 32, 48, 64, 128)


def unlimited(base: semantic.Thresholds) -> semantic.Thresholds:
    inf = {b: math.inf for b in BUCKETS}
    return semantic.Thresholds(
        base.block_floor,
        base.dup_cosine,
        base.near_cosine,
        base.adjacent_floor,
        inf,
        inf,
        inf,
        inf,
        inf,
    )


def calibrate(
    base: semantic.Thresholds, looks: list[semantic.Statistics], alpha: float
) -> semantic.Thresholds:
    """Per opened-block bucket, each statistic's honest ``1 - alpha`` quantile (the higher)."""

    def table(name: str, counts: bool = True) -> dict[int, float]:
        out: dict[int, float] = {}
        previous = 0.0
        for low, high in zip(BUCKETS, (*BUCKETS[1:], 10**9), strict=True):
            values = [float(getattr(s, name)) for s in looks if low <= s.opened < high]
            if values:
                value = float(np.quantile(values, 1 - alpha, method="higher"))
                # A count never gets a lower limit with more blocks open: more chances.
                previous = max(previous, value) if counts else value
            out[low] = previous
        return out

    return semantic.Thresholds(
        base.block_floor,
        base.dup_cosine,
        base.near_cosine,
        base.adjacent_floor,
        table("off_topic"),
        table("duplicates", counts=False),
        table("near_share", counts=False),
        table("incoherent"),
        table("drift", counts=False),
    )
