"""A learned per-block judge: is this opened block padding? And are blocks pasted copies?

Two request-level flags over the opened blocks' :func:`metering.block_features.features`:

* **filler**: a logistic regression on the block's features and its embedding gives each opened
  block a score (the log-odds that it was added rather than generated for this request); the
  request is flagged when its highest score exceeds ``threshold``. Weights and threshold ship
  with the release (``block_classifier.json``, made by ``python -m bench.audit.train`` from
  calibration traces and synthetic attacks on those traces only; the threshold is the honest
  calibration requests' ``1 - alpha`` quantile of out-of-fold scores under the audit's own
  sequential sampling, so the false-positive rate is set before any test trace is seen).
* **copies**: opened blocks that have an identical twin (the same text embeds to the same
  bytes), where neither the twins' neighbours continue each other (cosine under
  ``loop_context``) nor the block sits among near-identical neighbours (under
  ``list_context``). An honest model that loops repeats runs of blocks, or lists of numbers
  whose neighbours look alike; a pasted copy stands alone. With ``copy_neighbours_open``, a
  block counts only once its own neighbours (those that exist) are open too, so that the loop
  and list tests can see them. The three settings are read from the JSON; weights without
  them (the shipped ones too) keep the first release's rule (0.9, 0.8, no neighbour rule). At
  least ``copies_limit`` of them is a finding (the limit: the same honest calibration
  quantile). Honest verbatim repeats are repeated formulas, which need long reasoning: a
  request of fewer than
  ``short_blocks`` blocks is held to ``short_copies_limit``, the same quantile over the honest
  calibration requests of that size (with every block open, none of the 66 under 20 blocks
  has a lone copy; against 30 of the 246 longer ones).
* **lift** and **run gap** (request-level evidence, optional limits): how far the top block
  score stands above the request's own median score (a request whose honest blocks all score
  high is not odd for it), and the largest gap between the mean score of a run of at least
  ``RUN_MIN`` consecutive opened blocks and the mean of the other opened blocks (a spliced run
  is several blocks that each score only mildly high, together against the rest); both only
  once ``EVIDENCE_MIN`` blocks (or all of them) are open, since on a few blocks they are noise
  that the limits would have to absorb. Their limits
  are set with ``threshold`` so that at most ``alpha`` of the honest calibration requests reach
  any of the three (out-of-fold, under the audit's sequential sampling).

Pure numpy apart from reading the shipped weights with :mod:`importlib.resources`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from fairgate.metering.audit_report import Finding, Reason
from fairgate.metering.block_features import NAMES, features

Array = npt.NDArray[Any]
DATA = "block_classifier.json"
# The copy rule's defaults, for weights that do not carry their own (block_classifier.json):
LOOP_CONTEXT = 0.9  # twins whose neighbours match this well are an honest loop
LIST_CONTEXT = 0.8  # a block this close to a neighbour sits in a list of look-alikes
NEIGHBOURS_OPEN = False  # count a copy only once its own neighbours are open too
RUN_MIN = 3  # a run gap needs this many opened blocks inside the run
OUT_MIN = 2  # ... and this many outside it
EVIDENCE_MIN = 16  # lift and run gap wait for this many open blocks (or all): early looks are noise
INF = float("inf")


def design(
    blocks: Sequence[int], total: int, vectors: Array, prompt: Array, answer: Array
) -> Array:
    """The classifier's inputs for the opened blocks: their features, then their embeddings."""
    feats = features(blocks, total, vectors, prompt, answer)
    return np.concatenate([feats, np.asarray(vectors, dtype=np.float32)], axis=1)


def copies(
    feats: Array,
    blocks: Sequence[int] | None = None,
    total: int | None = None,
    *,
    loop_context: float = LOOP_CONTEXT,
    list_context: float = LIST_CONTEXT,
    neighbours_open: bool = NEIGHBOURS_OPEN,
) -> int:
    """Opened blocks with an identical twin that neither a loop nor a list explains.

    ``feats``: rows of :func:`metering.block_features.features` for the opened ``blocks``
    (sorted indices of ``total``). With ``neighbours_open``, a block counts only when its
    previous and next blocks are open too, where they exist (block 0 has no previous one,
    block ``total - 1`` no next one); that needs ``blocks`` and ``total``."""
    col = {name: i for i, name in enumerate(NAMES)}
    neighbour = np.maximum(feats[:, col["prev"]], feats[:, col["next"]])
    lone = (
        (feats[:, col["identical"]] > 0)
        & (feats[:, col["twin_context"]] < loop_context)
        & (neighbour < list_context)
    )
    if neighbours_open:
        if blocks is None or total is None:
            raise ValueError("the neighbour rule needs the opened blocks and the block count")
        idx = np.asarray(blocks)
        first, last = idx == 0, idx == total - 1
        lone &= (feats[:, col["has_prev"]] > 0) | first
        lone &= (feats[:, col["has_next"]] > 0) | last
    return int(lone.sum())


def run_gap(scores: Array) -> float:
    """Over every run of at least ``RUN_MIN`` consecutive rows (with ``OUT_MIN`` left outside),
    the largest mean score inside the run minus the mean outside it; ``-inf`` if none fits."""
    n = len(scores)
    if n < RUN_MIN + OUT_MIN:
        return -INF
    c = np.concatenate([[0.0], np.cumsum(np.asarray(scores, dtype=np.float64))])
    start, end = np.triu_indices(n + 1, RUN_MIN)
    inside = end - start
    keep = n - inside >= OUT_MIN
    start, end, inside = start[keep], end[keep], inside[keep]
    total = c[end] - c[start]
    return float(np.max(total / inside - (c[-1] - total) / (n - inside)))


@dataclass(frozen=True, slots=True)
class Evidence:
    """A request's opened blocks as the classifier sees them: the request-level statistics."""

    top: float = -INF  # the highest block score
    lift: float = -INF  # the top score over the request's median score
    gap: float = -INF  # the best run's mean score over the other blocks' (run_gap)
    copies: int = 0  # lone copies

    def most(self, other: Evidence) -> Evidence:
        """Each statistic's larger value (over the looks of a sequential audit)."""
        return Evidence(
            max(self.top, other.top),
            max(self.lift, other.lift),
            max(self.gap, other.gap),
            max(self.copies, other.copies),
        )


@dataclass(frozen=True, slots=True)
class BlockClassifier:
    mean: Array
    scale: Array
    weights: Array
    bias: float
    threshold: float
    copies_limit: int
    trained_on: str = ""
    short_blocks: int = 0
    short_copies_limit: int = 10**9
    lift_threshold: float = INF
    gap_threshold: float = INF
    loop_context: float = LOOP_CONTEXT
    list_context: float = LIST_CONTEXT
    copy_neighbours_open: bool = NEIGHBOURS_OPEN

    def copies(self, feats: Array, blocks: Sequence[int], total: int) -> int:
        """:func:`copies` under this classifier's copy rule."""
        return copies(
            feats,
            blocks,
            total,
            loop_context=self.loop_context,
            list_context=self.list_context,
            neighbours_open=self.copy_neighbours_open,
        )

    def limit_for(self, total: int) -> int:
        """The lone-copies limit for a request of ``total`` blocks."""
        return self.short_copies_limit if total < self.short_blocks else self.copies_limit

    def scores(self, x: Array) -> Array:
        """Per row of :func:`design`: the log-odds that the block is padding."""
        return np.asarray(((x - self.mean) / self.scale) @ self.weights + self.bias)

    def evidence(
        self, blocks: Sequence[int], total: int, vectors: Array, prompt: Array, answer: Array
    ) -> tuple[Evidence, Array]:
        """The request-level statistics of the opened ``blocks``, and each block's score."""
        if not len(blocks):
            return Evidence(), np.zeros(0)
        x = design(blocks, total, vectors, prompt, answer)
        s = self.scores(x)
        top = float(s.max())
        lone = self.copies(x[:, : len(NAMES)], blocks, total)
        if len(blocks) < min(EVIDENCE_MIN, total):
            return Evidence(top, -INF, -INF, lone), s
        return Evidence(top, top - float(np.median(s)), run_gap(s), lone), s

    def judge(
        self, blocks: Sequence[int], total: int, vectors: Array, prompt: Array, answer: Array
    ) -> tuple[Evidence, list[Finding]]:
        """The request-level statistics and the findings they make."""
        ev, s = self.evidence(blocks, total, vectors, prompt, answer)
        if not len(blocks):
            return ev, []
        out: list[Finding] = []
        if ev.top > self.threshold or ev.lift > self.lift_threshold:
            worst = [blocks[i] for i in np.argsort(-s)[:3]]
            out.append(
                Finding(
                    Reason.FILLER,
                    f"opened block(s) {', '.join(map(str, worst))} score as padding (top "
                    f"{ev.top:.2f}, {ev.lift:.2f} over the request's median; honest requests: "
                    f"at most {self.threshold:.2f} and {self.lift_threshold:.2f})",
                )
            )
        if ev.gap > self.gap_threshold:
            out.append(
                Finding(
                    Reason.SPLICED,
                    f"a run of opened blocks scores {ev.gap:.2f} above the rest of the request "
                    f"on average (honest requests: at most {self.gap_threshold:.2f}): reasoning "
                    "pasted in from elsewhere",
                )
            )
        limit = self.limit_for(total)
        if ev.copies >= limit:
            out.append(
                Finding(
                    Reason.DUPLICATE,
                    f"{ev.copies} opened blocks are verbatim copies of another block, outside any "
                    f"loop or list (honest requests of {total} blocks: fewer than {limit})",
                )
            )
        return ev, out

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [*NAMES, f"embedding[{len(self.mean) - len(NAMES)}]"],
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": [round(float(v), 6) for v in self.weights],
            "bias": self.bias,
            "threshold": self.threshold,
            "copies_limit": self.copies_limit,
            "trained_on": self.trained_on,
            "short_blocks": self.short_blocks,
            "short_copies_limit": self.short_copies_limit,
            "lift_threshold": _finite(self.lift_threshold),
            "gap_threshold": _finite(self.gap_threshold),
            "loop_context": self.loop_context,
            "list_context": self.list_context,
            "copy_neighbours_open": self.copy_neighbours_open,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlockClassifier:
        def vec(name: str) -> Array:
            return np.asarray(data[name], dtype=np.float32)

        return cls(
            vec("mean"),
            vec("scale"),
            vec("weights"),
            float(data["bias"]),
            float(data["threshold"]),
            int(data["copies_limit"]),
            str(data.get("trained_on", "")),
            int(data.get("short_blocks", 0)),
            int(data.get("short_copies_limit", 10**9)),
            _limit(data.get("lift_threshold")),
            _limit(data.get("gap_threshold")),
            float(data.get("loop_context", LOOP_CONTEXT)),
            float(data.get("list_context", LIST_CONTEXT)),
            bool(data.get("copy_neighbours_open", NEIGHBOURS_OPEN)),
        )


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None  # JSON has no infinity


def _limit(value: Any) -> float:
    return INF if value is None else float(value)


@cache
def load() -> BlockClassifier:
    """The classifier shipped with this release."""
    text = resources.files("fairgate.metering").joinpath(DATA).read_text()
    return BlockClassifier.from_dict(json.loads(text))


def fit(x: Array, y: Array, w: Array, l2: float = 1.0, steps: int = 12) -> BlockClassifier:
    """L2-regularised logistic regression by Newton's method on standardised columns
    (``threshold`` and ``copies_limit`` are left for the caller to calibrate)."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1).astype(np.float64)
    beta = np.zeros(z.shape[1])
    ridge = l2 * np.eye(z.shape[1])
    ridge[-1, -1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
        grad = z.T @ (w * (p - y)) + ridge @ beta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + ridge
        beta -= np.linalg.solve(hess, grad)
    return BlockClassifier(mean, scale, beta[:-1], float(beta[-1]), float("inf"), 10**9)
