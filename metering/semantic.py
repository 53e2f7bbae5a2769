"""Is the opened reasoning genuine reasoning about this request? Checks on block embeddings.

The auditor sees the embeddings of the sampled blocks (:mod:`metering.protocol`, version 2), the
prompt and the visible answer, never the hidden text. Five statistics, each computed over the
opened blocks and compared with a threshold calibrated on honest traces for that many opened
blocks (:mod:`metering.calibration`, made by ``python -m bench.audit --calibrate``):

* **off-topic** (relevance): how far blocks' genuineness ``max(relevance, topic)`` falls below
  ``block_floor``, summed, where relevance is the cosine to the prompt or the answer, whichever
  is higher, and topic the cosine to the mean of the most relevant quarter of the other opened
  blocks. Random-token padding and reasoning spliced from another request (same domain
  or not) score low on both; honest steps, even terse ones, stay near the request's topic.
* **drift** (splicing): ``1 - mean genuineness``: a run of reasoning from another request is
  on some topic, only not quite this one's.
* **duplicates**: the share of opened blocks with an (almost) identical twin among them (cosine
  >= ``dup_cosine``): looped or repeated filler.
* **near-duplicates**: the share of opened blocks with a near twin (cosine >= ``near_cosine``)
  among the other opened blocks: a second rendition of the same solution, the adaptive filler
  that is on topic and coherent but says again what was said.
* **incoherent**: adjacent opened blocks whose cosine is below ``adjacent_floor``.

A cross-request check needs memory across audits: :class:`SpliceIndex` keeps the block
embeddings an auditor has seen and reports a block that (almost) equals one of another request.

Pure: numpy only. Findings are :class:`metering.audit_report.Finding` values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fairgate.metering.audit_report import Finding, Reason

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Calibrated cut-offs; per statistic, the largest honest value at each opened-block count."""

    block_floor: float
    dup_cosine: float
    near_cosine: float
    adjacent_floor: float
    # opened blocks -> the most a statistic may reach on an honest request
    max_off_topic: Mapping[int, float]
    max_duplicates: Mapping[int, float]
    max_near_share: Mapping[int, float]
    max_incoherent: Mapping[int, float]
    max_drift: Mapping[int, float] = field(default_factory=dict)

    @staticmethod
    def _at(table: Mapping[int, float], opened: int) -> float:
        keys = sorted(table)
        if not keys:
            return float("inf")
        below = [k for k in keys if k <= opened] or keys[:1]
        return float(table[below[-1]])

    def limits(self, opened: int) -> dict[str, float]:
        return {
            "off_topic": self._at(self.max_off_topic, opened),
            "duplicates": self._at(self.max_duplicates, opened),
            "near_share": self._at(self.max_near_share, opened),
            "incoherent": self._at(self.max_incoherent, opened),
            "drift": self._at(self.max_drift, opened),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_floor": self.block_floor,
            "dup_cosine": self.dup_cosine,
            "near_cosine": self.near_cosine,
            "adjacent_floor": self.adjacent_floor,
            "max_off_topic": {str(k): v for k, v in self.max_off_topic.items()},
            "max_duplicates": {str(k): v for k, v in self.max_duplicates.items()},
            "max_near_share": {str(k): v for k, v in self.max_near_share.items()},
            "max_incoherent": {str(k): v for k, v in self.max_incoherent.items()},
            "max_drift": {str(k): v for k, v in self.max_drift.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Thresholds:
        def table(name: str) -> dict[int, float]:
            return {int(k): float(v) for k, v in data[name].items()}

        return cls(
            block_floor=float(data["block_floor"]),
            dup_cosine=float(data["dup_cosine"]),
            near_cosine=float(data["near_cosine"]),
            adjacent_floor=float(data["adjacent_floor"]),
            max_off_topic=table("max_off_topic"),
            max_duplicates=table("max_duplicates"),
            max_near_share=table("max_near_share"),
            max_incoherent=table("max_incoherent"),
            max_drift=table("max_drift") if "max_drift" in data else {},
        )


@dataclass(frozen=True, slots=True)
class Statistics:
    """The four statistics of one request's opened blocks, and the per-block evidence."""

    opened: int
    off_topic: float  # sum over opened blocks of how far genuineness falls below block_floor
    duplicates: float  # share of opened blocks with an (almost) identical twin among them
    near_share: float
    incoherent: int
    drift: float  # 1 - mean genuineness: a run of spliced reasoning lowers the whole request
    genuineness: tuple[float, ...]  # per opened block, in block order
    duplicate_pairs: tuple[tuple[int, int], ...]
    incoherent_pairs: tuple[tuple[int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "opened": self.opened,
            "off_topic": self.off_topic,
            "duplicates": self.duplicates,
            "near_share": round(self.near_share, 4),
            "incoherent": self.incoherent,
            "drift": round(self.drift, 4),
        }


def statistics(
    blocks: Sequence[int],
    vectors: Vectors,
    prompt: npt.NDArray[Any],
    answer: npt.NDArray[Any],
    thresholds: Thresholds,
) -> Statistics:
    """The statistics of opened blocks ``blocks`` (block indices, sorted) with unit ``vectors``."""
    n = len(blocks)
    if n == 0:
        return Statistics(0, 0.0, 0.0, 0.0, 0, 0.0, (), (), ())
    relevance = np.maximum(vectors @ prompt, vectors @ answer)
    topic = _topic(vectors, relevance)
    genuine = np.maximum(relevance, topic)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    upper = np.triu_indices(n, 1)
    dup = [
        (blocks[i], blocks[j])
        for i, j in zip(*upper, strict=True)
        if sims[i, j] >= thresholds.dup_cosine
    ]
    best = sims.max(axis=1)
    near = float((best >= thresholds.near_cosine).mean()) if n > 1 else 0.0
    twins = float((best >= thresholds.dup_cosine).mean()) if n > 1 else 0.0
    adjacent = [
        (blocks[i], blocks[i + 1])
        for i in range(n - 1)
        if blocks[i + 1] == blocks[i] + 1 and sims[i, i + 1] < thresholds.adjacent_floor
    ]
    return Statistics(
        opened=n,
        off_topic=float(np.maximum(thresholds.block_floor - genuine, 0.0).sum()),
        duplicates=twins,
        near_share=near,
        incoherent=len(adjacent),
        drift=float(1.0 - genuine.mean()),
        genuineness=tuple(float(g) for g in genuine),
        duplicate_pairs=tuple(dup),
        incoherent_pairs=tuple(adjacent),
    )


def _topic(vectors: Vectors, relevance: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Each block's cosine to the mean of the *most relevant* other opened blocks (the top
    quarter by relevance): the request's topic, which padding cannot drag towards itself."""
    n = len(vectors)
    if n < 2:
        return relevance
    anchors = relevance >= np.quantile(relevance, 0.75)
    weights = np.repeat(anchors[None, :].astype(np.float32), n, axis=0)
    np.fill_diagonal(weights, 0.0)
    counts = weights.sum(axis=1)
    centre = weights @ vectors
    norms = np.maximum(np.linalg.norm(centre, axis=1), 1e-12)
    topic = (vectors * centre).sum(axis=1) / norms
    return np.where(counts > 0, topic, relevance)


def findings(stats: Statistics, thresholds: Thresholds, block_size: int) -> list[Finding]:
    """Failures for the statistics above their honest limits at this many opened blocks."""
    limits = thresholds.limits(stats.opened)
    out: list[Finding] = []
    if stats.off_topic > limits["off_topic"]:
        low = sum(g < thresholds.block_floor for g in stats.genuineness)
        out.append(
            Finding(
                Reason.IRRELEVANT,
                f"{low} of {stats.opened} opened blocks are about neither the prompt, the answer "
                f"nor the request's topic (shortfall {stats.off_topic:.3f}; honest requests: at "
                f"most {limits['off_topic']:.3f})",
            )
        )
    if stats.drift > limits["drift"]:
        out.append(
            Finding(
                Reason.SPLICED,
                f"the opened blocks as a whole drift from the request (1 - mean genuineness "
                f"{stats.drift:.3f}; honest requests: at most {limits['drift']:.3f}): reasoning "
                "from elsewhere",
            )
        )
    if stats.duplicates > limits["duplicates"]:
        shown = ", ".join(
            f"{a * block_size}~{b * block_size}" for a, b in stats.duplicate_pairs[:4]
        )
        out.append(
            Finding(
                Reason.DUPLICATE,
                f"{stats.duplicates:.0%} of opened blocks repeat another ({shown}); honest "
                f"requests: at most {limits['duplicates']:.0%}",
            )
        )
    if stats.near_share > limits["near_share"]:
        out.append(
            Finding(
                Reason.DUPLICATE,
                f"{stats.near_share:.0%} of opened blocks nearly repeat another opened block "
                f"(honest requests: at most {limits['near_share']:.0%})",
            )
        )
    if stats.incoherent > limits["incoherent"]:
        out.append(
            Finding(
                Reason.INCOHERENT,
                f"{stats.incoherent} adjacent block pair(s) do not continue each other "
                f"(honest requests: at most {limits['incoherent']:g})",
            )
        )
    return out


@dataclass
class SpliceIndex:
    """Block embeddings an auditor has seen, by request: a block of one request that (almost)
    equals a block of another is reasoning spliced across requests."""

    cosine: float = 0.98
    _vectors: list[Vectors] = field(default_factory=list)
    _owners: list[str] = field(default_factory=list)

    def check(self, request_id: str, blocks: Sequence[int], vectors: Vectors) -> list[Finding]:
        out: list[Finding] = []
        if self._vectors and len(blocks):
            known = np.concatenate(self._vectors)
            owners = [o for o, v in zip(self._owners, self._vectors, strict=True) for _ in v]
            sims = vectors @ known.T
            for row, block in zip(sims, blocks, strict=True):
                best = int(row.argmax())
                if row[best] >= self.cosine and owners[best] != request_id:
                    out.append(
                        Finding(
                            Reason.SPLICED,
                            f"block {block} matches a block of request {owners[best]} "
                            f"(cosine {row[best]:.3f})",
                        )
                    )
        return out

    def add(self, request_id: str, vectors: Vectors) -> None:
        if len(vectors):
            self._vectors.append(vectors)
            self._owners.append(request_id)
