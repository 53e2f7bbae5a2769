"""From raw outcomes to the rows and tables printed side by side.

Columns (one row per gateway, one table per workload):

    <tenant>   tokens that tenant received inside the contention window (streamed words)
    jain       Jain's index of those per-tenant counts: 1 = equal, 1/n = one tenant got all
    p50/p99    end-to-end latency of the light tenants' requests (flood) or of all (steady), s
    ttft       the same requests' time to first token, s
    tok/s      tokens received by all tenants inside the window / window length
    cached%    prompt tokens the upstream engines served from their prefix cache (their count)
    r0/r1      requests each upstream engine received (how the gateway spread the work)
    ovh ms     added latency: p50 TTFT on an idle system minus direct's (direct = reference)
    err        requests that failed or came back short (never retried, never hidden)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.peers.workloads import Outcome

__all__ = ["Row", "jain", "percentile", "render_table", "summarize"]


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def jain(values: list[float]) -> float | None:
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else None


@dataclass(slots=True)
class Row:
    gateway: str
    version: str
    tenant_aware: bool
    window_tokens: dict[str, int]
    jain: float | None
    latency_p50: float | None
    latency_p99: float | None
    ttft_p50: float | None
    ttft_p99: float | None
    tokens_per_s: float
    cached_ratio: float | None
    replica_requests: list[int]
    overhead_ms: float | None
    requests: int
    errors: int
    error_examples: list[str] = field(default_factory=list)
    upstream: list[dict[str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    gateway: str,
    version: str,
    tenant_aware: bool,
    outcome: Outcome,
    focus: tuple[str, ...],
    upstream: list[dict[str, int]],
    overhead_ms: float | None,
) -> Row:
    """``focus``: the tenants whose latency is reported (the light ones in the flood)."""
    ok = [r for r in outcome.records if r.error is None and r.tenant in focus]
    latencies = [r.latency for r in ok if r.latency is not None]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    tokens = {t: outcome.window_tokens.get(t, 0) for t in outcome.tenants}
    errors = [r.error for r in outcome.records if r.error is not None]
    prompt = sum(u.get("prompt_tokens", 0) for u in upstream)
    cached = sum(u.get("cached_tokens", 0) for u in upstream)
    return Row(
        gateway=gateway,
        version=version,
        tenant_aware=tenant_aware,
        window_tokens=tokens,
        jain=jain([float(v) for v in tokens.values()]),
        latency_p50=percentile(latencies, 50),
        latency_p99=percentile(latencies, 99),
        ttft_p50=percentile(ttfts, 50),
        ttft_p99=percentile(ttfts, 99),
        tokens_per_s=sum(tokens.values()) / outcome.window_s,
        cached_ratio=cached / prompt if prompt else None,
        replica_requests=[u.get("requests", 0) for u in upstream],
        overhead_ms=overhead_ms,
        requests=len(outcome.records),
        errors=len(errors),
        error_examples=sorted(set(errors))[:3],
        upstream=upstream,
    )


def _num(value: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}{spec}}"


def render_table(title: str, tenants: tuple[str, ...], rows: list[Row], focus: str) -> str:
    name_width = max([len("gateway"), *(len(r.gateway) for r in rows)])
    head = (
        f"{'gateway':<{name_width}} "
        + " ".join(f"{t[:7]:>7}" for t in tenants)
        + f" {'jain':>5} {'p50 s':>6} {'p99 s':>6} {'ttft50':>6} {'ttft99':>6}"
        + f" {'tok/s':>6} {'cached%':>7} {'r0/r1':>7} {'ovh ms':>6} {'req':>4} {'err':>4}"
    )
    lines = [title, f"(latency and TTFT columns: {focus})", head, "-" * len(head)]
    for row in rows:
        overhead = "ref" if row.gateway == "direct" else _num(row.overhead_ms, ".1f", 6).strip()
        cached = None if row.cached_ratio is None else 100 * row.cached_ratio
        split = "/".join(str(n) for n in row.replica_requests)
        lines.append(
            f"{row.gateway:<{name_width}} "
            + " ".join(f"{row.window_tokens.get(t, 0):7d}" for t in tenants)
            + f" {_num(row.jain, '.3f', 5)} {_num(row.latency_p50, '.2f', 6)}"
            + f" {_num(row.latency_p99, '.2f', 6)} {_num(row.ttft_p50, '.2f', 6)}"
            + f" {_num(row.ttft_p99, '.2f', 6)} {row.tokens_per_s:6.0f}"
            + f" {_num(cached, '.1f', 7)} {split:>7} {overhead:>6} {row.requests:4d}"
            + f" {row.errors:4d}"
        )
    return "\n".join(lines)
