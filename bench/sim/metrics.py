"""What a simulation measured, per tenant and overall, and the fairness numbers derived."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fairgate.scheduler import SchedulerStats


def jain(xs: list[float]) -> float:
    """Jain's index: 1 when all are equal, 1/n when one has everything."""
    total = sum(xs)
    squares = sum(x * x for x in xs)
    return total * total / (len(xs) * squares) if squares else 1.0


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return math.nan
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class TenantResult:
    tenant: str
    weight: float = 1.0
    sent: int = 0
    rejected: int = 0
    completed: int = 0
    service: float = 0.0  # weighted tokens served inside the window
    generated: int = 0  # tokens generated inside the window
    ttft: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    buckets: dict[int, float] = field(default_factory=dict)  # service per bucket
    idle: list[tuple[float, float]] = field(default_factory=list)  # nothing outstanding

    def add_service(self, now: float, amount: float, bucket_s: float) -> None:
        self.service += amount
        b = int(now // bucket_s)
        self.buckets[b] = self.buckets.get(b, 0.0) + amount

    def backlogged_throughout(self, start: float, end: float) -> bool:
        return not any(a < end and b > start for a, b in self.idle)

    def ttft_p(self, q: float) -> float:
        return percentile(self.ttft, q)

    def latency_p(self, q: float) -> float:
        return percentile(self.latency, q)


@dataclass(slots=True)
class SimResult:
    tenants: dict[str, TenantResult]
    window: float
    makespan: float
    prompt_tokens: int
    cached_tokens: int
    stats: SchedulerStats
    bucket_s: float = 5.0

    @property
    def decisions(self) -> int:
        return self.stats.decisions

    @property
    def throughput(self) -> float:
        """Generated tokens per second inside the window."""
        return sum(t.generated for t in self.tenants.values()) / self.window

    @property
    def requests_per_s(self) -> float:
        return sum(t.completed for t in self.tenants.values()) / self.makespan

    @property
    def hit_ratio(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def jain(self) -> float:
        """Jain's index of weight-normalised service."""
        return jain([t.service / t.weight for t in self.tenants.values()])

    @property
    def jain_generated(self) -> float:
        return jain([t.generated / t.weight for t in self.tenants.values()])

    def min_share(self) -> float:
        """The smallest tenant's weight-normalised service as a fraction of an equal share."""
        xs = [t.service / t.weight for t in self.tenants.values()]
        mean = sum(xs) / len(xs)
        return min(xs) / mean if mean else 1.0

    def share(self, tenant: str) -> float:
        xs = {n: t.service / t.weight for n, t in self.tenants.items()}
        mean = sum(xs.values()) / len(xs)
        return xs[tenant] / mean if mean else 1.0

    def generated_share(self, tenant: str) -> float:
        xs = {n: t.generated / t.weight for n, t in self.tenants.items()}
        mean = sum(xs.values()) / len(xs)
        return xs[tenant] / mean if mean else 1.0

    def max_service_gap(self) -> float:
        """The largest difference in weight-normalised service, within one bucket, between two
        tenants that were both backlogged throughout it."""
        gap = 0.0
        for b in range(int(self.window // self.bucket_s)):
            start, end = b * self.bucket_s, (b + 1) * self.bucket_s
            xs = [
                t.buckets.get(b, 0.0) / t.weight
                for t in self.tenants.values()
                if t.backlogged_throughout(start, end)
            ]
            if len(xs) >= 2:
                gap = max(gap, max(xs) - min(xs))
        return gap

    def series(self, tenant: str) -> list[tuple[float, float]]:
        """(bucket end, cumulative service) over the window."""
        t = self.tenants[tenant]
        out, total = [], 0.0
        for b in range(math.ceil(self.window / self.bucket_s)):
            total += t.buckets.get(b, 0.0)
            out.append(((b + 1) * self.bucket_s, total))
        return out
