"""Jain's fairness index of the service tenants received over a sliding time window.

Service is the scheduler's weighted tokens (uncached prompt * w_p + generated * w_q),
normalised by each tenant's weight, so tenants with weights 2 and 1 that got 2:1 are
perfectly fair. Over the window [now - W, now], for each *active* tenant i (one that was
served something in the window, or had a job queued or running at any sample in it):

    x_i = (served_i(now) - served_i(now - W)) / weight_i
    J   = (Σ x_i)² / (n · Σ x_i²)

J is 1 when every active tenant got the same normalised service and 1/n when one of n got
all of it. A backlogged tenant that got nothing counts with x = 0, so starvation shows. With
no active tenant, or none served yet, there is nothing to compare and J is 1.

Time is an argument. ``observe`` may be called as often as one likes (every scrape, every
refresh); samples closer than ``resolution_s`` are merged, so memory stays bounded by
W / resolution.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DEFAULT_WINDOW_S = 60.0


@dataclass(slots=True)
class _Sample:
    opened: float  # when the sample was first taken; later observations merge into it
    at: float  # when it was last updated
    served: dict[str, float]
    busy: set[str] = field(default_factory=set)


class FairnessWindow:
    def __init__(self, window_s: float = DEFAULT_WINDOW_S, resolution_s: float | None = None):
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self.resolution_s = resolution_s if resolution_s is not None else window_s / 60
        self._samples: deque[_Sample] = deque()
        self._weights: dict[str, float] = {}
        self._now = 0.0

    def observe(
        self,
        now: float,
        served: Mapping[str, float],
        weights: Mapping[str, float],
        busy: Iterable[str] = (),
    ) -> None:
        """``served``: cumulative weighted service per tenant; ``busy``: tenants with a job
        queued or running now."""
        self._weights = dict(weights)
        self._now = now
        busy = set(busy)
        last = self._samples[-1] if self._samples else None
        # Never merge into the baseline (the only sample): it must stay where it was taken.
        if last is not None and len(self._samples) > 1 and now - last.opened < self.resolution_s:
            last.at, last.served = now, dict(served)
            last.busy |= busy
        else:
            self._samples.append(_Sample(now, now, dict(served), busy))
        # Keep the newest sample at or before the window's start as the baseline.
        start = now - self.window_s
        while len(self._samples) > 1 and self._samples[1].at <= start:
            self._samples.popleft()

    def shares(self) -> dict[str, float]:
        """Weight-normalised service in the window, per active tenant."""
        if not self._samples:
            return {}
        base, latest = self._samples[0].served, self._samples[-1].served
        active = {t for t, v in latest.items() if v - base.get(t, 0.0) > 0}
        start = self._now - self.window_s
        for sample in self._samples:
            if sample.at > start or sample is self._samples[-1]:
                active |= sample.busy
        return {
            t: (latest.get(t, 0.0) - base.get(t, 0.0)) / self._weights.get(t, 1.0)
            for t in sorted(active)
        }

    def index(self) -> float:
        return jain(self.shares().values())


def jain(xs: Iterable[float]) -> float:
    """Jain's index of ``xs``; 1.0 for an empty or all-zero list."""
    values = list(xs)
    square_sum = sum(x * x for x in values)
    if not values or square_sum <= 0:
        return 1.0
    return sum(values) ** 2 / (len(values) * square_sum)
