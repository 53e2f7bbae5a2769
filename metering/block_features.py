"""What the auditor knows about each opened block, as numbers a classifier can weigh.

Everything here comes from what an embeddings-only opening reveals (:mod:`metering.protocol`,
version 2): the opened blocks' indices and unit embeddings, the request's block count (its
billed leaves over the block size), and the prompt's and the answer's embeddings. No text.

Per opened block (rows in block order):

* its relevance to the prompt and to the answer, and how far that stands above or below the
  request's own median (some honest requests are terse lists that relate little to the prompt);
* its cosine to the request's topic (the mean of the most relevant quarter of the other opened
  blocks) and to the mean of all the others;
* its nearest twin among the other opened blocks, whether that twin is identical, and whether
  the twins' neighbours also match (an honest loop continues; a pasted copy does not);
* its cosine to the previous and the next block when those are open (pasted text breaks the
  flow at its edges), and the relevance of its window of neighbours (a spliced run lowers it);
* its position in the request, and the request's own loopiness (mean nearest-twin cosine).

:data:`NAMES` names the columns; :func:`features` returns them. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
IDENTICAL = 0.999  # identical text quantizes to identical bytes: cosine 1 up to rounding

NAMES = (
    "rel_prompt",
    "rel_answer",
    "rel_above_median",
    "topic",
    "centroid",
    "twin",
    "identical",
    "twin_context",
    "has_prev",
    "prev",
    "has_next",
    "next",
    "window_rel",
    "position",
    "loopiness",
    "request_rel",
)


def features(
    blocks: Sequence[int],
    total: int,
    vectors: Matrix,
    prompt: npt.NDArray[Any],
    answer: npt.NDArray[Any],
) -> Matrix:
    """One row per opened block (``blocks``: sorted indices of ``total``), columns :data:`NAMES`."""
    n = len(blocks)
    if n == 0:
        return np.zeros((0, len(NAMES)), dtype=np.float32)
    idx = np.asarray(blocks)
    rel_p, rel_a = vectors @ prompt, vectors @ answer
    rel = np.maximum(rel_p, rel_a)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    twin = sims.max(axis=1) if n > 1 else np.zeros(n)
    prev, has_prev = _neighbour(sims, idx, -1)
    nxt, has_next = _neighbour(sims, idx, 1)
    columns = [
        rel_p,
        rel_a,
        rel - np.median(rel),
        _topic(vectors, rel),
        _centroid(vectors),
        twin,
        (twin >= IDENTICAL).astype(np.float32),
        _twin_context(sims, idx),
        has_prev,
        prev,
        has_next,
        nxt,
        _window(rel, idx),
        idx / max(total - 1, 1),
        np.full(n, twin.mean()),
        np.full(n, rel.mean()),
    ]
    return np.stack([np.asarray(c, dtype=np.float32) for c in columns], axis=1)


def _neighbour(
    sims: npt.NDArray[Any], idx: npt.NDArray[Any], step: int
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Cosine to the block ``step`` away when it is open (else 0), and whether it is."""
    n = len(idx)
    value, present = np.zeros(n), np.zeros(n)
    pairs = np.flatnonzero(idx[1:] == idx[:-1] + 1)  # i and i+1 are neighbours
    mine = pairs + (1 if step < 0 else 0)
    theirs = mine + step
    value[mine], present[mine] = sims[mine, theirs], 1.0
    return value, present


def _topic(vectors: Matrix, relevance: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Cosine to the mean of the most relevant quarter of the *other* opened blocks."""
    if len(vectors) < 2:
        return np.asarray(relevance)
    anchors = (relevance >= np.quantile(relevance, 0.75)).astype(np.float64)
    total = anchors @ vectors
    dots = vectors @ total
    # |total - a_i v_i|^2 for unit v_i
    norms = np.sqrt(np.maximum(total @ total - 2 * anchors * dots + anchors, 0.0))
    others = anchors.sum() - anchors
    topic = (dots - anchors) / np.maximum(norms, 1e-12)
    return np.where(others > 0, topic, relevance)


def _centroid(vectors: Matrix) -> npt.NDArray[Any]:
    n = len(vectors)
    if n < 2:
        return np.zeros(n)
    others = vectors.sum(axis=0)[None, :] - vectors
    norms = np.maximum(np.linalg.norm(others, axis=1), 1e-12)
    return np.asarray((vectors * others).sum(axis=1) / norms)


def _twin_context(sims: npt.NDArray[Any], idx: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """For a block with an identical twin: the best cosine between the twins' neighbours."""
    n = len(idx)
    where = {int(b): i for i, b in enumerate(idx)}
    out = np.zeros(n)
    for i in range(n):
        j = int(sims[i].argmax()) if n > 1 else i
        if j == i or sims[i, j] < IDENTICAL:
            continue
        best = 0.0
        for step in (-1, 1):
            a, b = where.get(int(idx[i]) + step), where.get(int(idx[j]) + step)
            if a is not None and b is not None and a != b:
                best = max(best, float(sims[a, b]))
        out[i] = best
    return out


def _window(relevance: npt.NDArray[Any], idx: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Mean relevance of the block and its open neighbours within two blocks."""
    near = (np.abs(idx[:, None] - idx[None, :]) <= 2).astype(np.float64)
    return np.asarray(near @ relevance / near.sum(axis=1))
