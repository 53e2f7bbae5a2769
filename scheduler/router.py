"""The router interface: which replica a job is queued on, decided once, at arrival.

A router ranks candidates, the healthy replicas of the job's model that the job does not
exclude, and returns one. ``Candidate`` is all it may look at (``scheduler.replica.Replica``
implements it; tests pass plain doubles). ``charge`` tells a router the service a tenant
consumed on a replica; only D²LPM keeps per-replica accounts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Protocol, TypeVar

from fairgate.scheduler.config import SchedulerConfig
from fairgate.scheduler.job import Job
from fairgate.scheduler.tenants import TenantBook


class Candidate(Protocol):
    @property
    def replica_id(self) -> str: ...

    def load(self) -> int:
        """Queued + in-flight jobs."""
        ...

    def work(self) -> float:
        """Expected work (weighted tokens) of queued + in-flight jobs."""
        ...

    def cache_room(self) -> int:
        """Tokens the prefix index can take before it evicts a prefix that was reused."""
        ...

    def work_ahead(self, tenant: str, job_work: float) -> float:
        """Queued work a new job of ``tenant`` of ``job_work`` would wait behind here."""
        ...

    def tenants(self) -> set[str]:
        """Tenants with jobs queued or running here."""
        ...

    def prefix_match(self, job: Job) -> int:
        """Tokens of ``job.prompt`` this replica's prefix index holds."""
        ...

    def cache_size(self) -> int:
        """Tokens in this replica's prefix index."""
        ...


C = TypeVar("C", bound=Candidate)


class Router(ABC):
    def __init__(self, config: SchedulerConfig, tenants: TenantBook) -> None:
        self.config = config
        self.tenants = tenants
        self.reasons: Counter[str] = Counter()  # decisions by why they were taken
        self.refills = 0

    @abstractmethod
    def route(self, job: Job, candidates: Sequence[C]) -> C:
        """Pick one of ``candidates`` (never empty) for ``job``."""

    def charge(self, tenant: str, replica_id: str, amount: float) -> None:
        """``tenant`` consumed ``amount`` weighted tokens on ``replica_id`` (negative: refund)."""
        return None

    def forget(self, replica_id: str) -> None:
        """The replica was removed."""
        return None

    def deficits(self, tenant: str) -> dict[str, float]:
        """Per-replica credit of ``tenant`` (D²LPM); empty for routers without accounts."""
        return {}


def least_loaded(candidates: Sequence[C]) -> C:
    """Fewest queued + in-flight jobs; ties go to the earliest candidate."""
    return min(candidates, key=lambda c: c.load())


def least_work(candidates: Sequence[C]) -> C:
    """Least expected outstanding work; ties go to the earliest candidate."""
    return min(candidates, key=lambda c: c.work())


def overloaded(chosen: Candidate, candidates: Sequence[Candidate], gap: float, rel: float) -> bool:
    """``chosen`` holds so much more queued work than the least loaded candidate that waiting
    there costs more than the locality saves (SGLang's guard, measured in work, not jobs)."""
    low = min(c.work() for c in candidates)
    high = chosen.work()
    return high - low > gap and high > low * rel


def imbalanced(candidates: Sequence[Candidate], abs_threshold: int, rel_threshold: float) -> bool:
    """SGLang's cache-aware guard: loads too uneven for locality to be worth following."""
    loads = [c.load() for c in candidates]
    low, high = min(loads), max(loads)
    return high - low > abs_threshold and high > low * rel_threshold
