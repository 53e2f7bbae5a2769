"""An engine's own Prometheus metrics (vLLM's ``/metrics``), read and renamed for re-export.

The gateway never republishes ``vllm:*`` names: each engine metric it keeps is mapped to a
``fairgate_engine_*`` name and later labelled with the gateway's ``model`` and ``replica``.
vLLM labels every sample with ``engine`` (the data-parallel rank) and ``model_name``; those
are folded away here: counts and counters are summed over ranks, fractions averaged.

Names are those of vLLM 0.32 (``tests/replicas/data/vllm-0.32.0-metrics.txt``), plus
``vllm:gpu_cache_usage_perc``, which older releases export instead of
``vllm:kv_cache_usage_perc``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

import httpx
from prometheus_client.parser import text_string_to_metric_families

ENGINE_PREFIX = "fairgate_engine_"
_NAME = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")


class Kind(Enum):
    GAUGE = "gauge"
    COUNTER = "counter"


class Fold(Enum):
    """How samples of one metric from several engine ranks become one value."""

    SUM = "sum"
    MEAN = "mean"


@dataclass(slots=True, frozen=True)
class EngineMetric:
    """``name`` is the exposed name, without ``_total`` for counters (the client adds it)."""

    sources: tuple[str, ...]  # vLLM sample names, the first one present wins
    name: str
    kind: Kind
    documentation: str
    fold: Fold = Fold.SUM


ENGINE_METRICS: tuple[EngineMetric, ...] = (
    EngineMetric(
        ("vllm:num_requests_running",),
        "fairgate_engine_requests_running",
        Kind.GAUGE,
        "Requests in the engine's running batch (vllm:num_requests_running).",
    ),
    EngineMetric(
        ("vllm:num_requests_waiting",),
        "fairgate_engine_requests_waiting",
        Kind.GAUGE,
        "Requests waiting inside the engine (vllm:num_requests_waiting).",
    ),
    EngineMetric(
        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        "fairgate_engine_kv_cache_usage_ratio",
        Kind.GAUGE,
        "Fraction of the engine's KV-cache blocks in use, 0 to 1 (vllm:kv_cache_usage_perc).",
        Fold.MEAN,
    ),
    EngineMetric(
        ("vllm:prefix_cache_queries_total",),
        "fairgate_engine_prefix_cache_queried_tokens",
        Kind.COUNTER,
        "Prompt tokens looked up in the engine's prefix cache (vllm:prefix_cache_queries).",
    ),
    EngineMetric(
        ("vllm:prefix_cache_hits_total",),
        "fairgate_engine_prefix_cache_hit_tokens",
        Kind.COUNTER,
        "Prompt tokens found in the engine's prefix cache (vllm:prefix_cache_hits).",
    ),
    EngineMetric(
        ("vllm:prompt_tokens_total",),
        "fairgate_engine_prompt_tokens",
        Kind.COUNTER,
        "Prefill tokens the engine processed (vllm:prompt_tokens).",
    ),
    EngineMetric(
        ("vllm:generation_tokens_total",),
        "fairgate_engine_generation_tokens",
        Kind.COUNTER,
        "Tokens the engine generated (vllm:generation_tokens).",
    ),
    EngineMetric(
        ("vllm:num_preemptions_total",),
        "fairgate_engine_preemptions",
        Kind.COUNTER,
        "Requests the engine preempted (vllm:num_preemptions).",
    ),
)


class EngineMetricsError(ValueError):
    """The text is not Prometheus exposition format."""


@dataclass(slots=True, frozen=True)
class EngineMetrics:
    """One reading of an engine: exposed name → value, only for metrics it exported."""

    values: dict[str, float] = field(default_factory=dict)

    def get(self, name: str) -> float | None:
        return self.values.get(name)


def parse_engine_metrics(
    text: str, metrics: Iterable[EngineMetric] = ENGINE_METRICS
) -> EngineMetrics:
    metrics = tuple(metrics)
    wanted = {source for metric in metrics for source in metric.sources}
    found: dict[str, list[float]] = {}
    try:
        for family in text_string_to_metric_families(_wanted_lines(text, wanted)):
            for sample in family.samples:
                if sample.name in wanted:
                    found.setdefault(sample.name, []).append(float(sample.value))
    except ValueError as error:
        raise EngineMetricsError(f"not Prometheus text: {error}") from None
    values: dict[str, float] = {}
    for metric in metrics:
        samples = next((found[s] for s in metric.sources if s in found), None)
        if not samples:
            continue
        total = sum(samples)
        values[metric.name] = total / len(samples) if metric.fold is Fold.MEAN else total
    return EngineMetrics(values)


def _wanted_lines(text: str, wanted: set[str]) -> str:
    """The sample lines of ``wanted`` names only, so that the full parser (pure Python, run on
    the gateway's event loop) never reads vLLM's hundreds of histogram lines: parsing them all
    stalled the loop for seconds on a busy machine. Other lines are only checked to start like
    a sample or a comment."""
    kept = []
    for line in text.splitlines():
        bare = line.lstrip()
        if not bare or bare[0] == "#":
            continue
        name = _NAME.match(line)
        if name is None:
            raise EngineMetricsError(f"not Prometheus text: {line[:80]!r}")
        if name.group(1) in wanted:
            kept.append(line)
    kept.append("")
    return "\n".join(kept)


async def scrape_engine_metrics(
    client: httpx.AsyncClient, url: str, *, timeout: float = 5.0
) -> EngineMetrics | None:
    """``url`` is the engine's base URL; None when it cannot be read (down, 404, garbage)."""
    try:
        response = await client.get(url.rstrip("/") + "/metrics", timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return parse_engine_metrics(response.text)
    except EngineMetricsError:
        return None
