"""The local queue policy interface: which waiting job one replica admits next.

Each replica owns one policy instance. The scheduler pushes jobs routed to the replica, removes
jobs that are cancelled or re-routed, pops the next job when the replica has a free slot, and
reports the service each tenant consumes on the replica (``charge``), which is what fair
policies order by. ``tests/scheduler/test_policy.py`` holds a scripted test double.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from fairgate.scheduler.fairness import Ledger
from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.tenants import TenantBook


class LocalPolicy(ABC):
    ledger: Ledger | None = None  # the fairness accounts it reads and charges, if any
    charges_ahead = False  # charged a job's expected output at admission, settled at the end

    def __init__(self, tenants: TenantBook) -> None:
        self.tenants = tenants

    @abstractmethod
    def __len__(self) -> int:
        """Waiting jobs."""

    @abstractmethod
    def __contains__(self, job_id: object) -> bool: ...

    @abstractmethod
    def push(self, record: JobRecord) -> None:
        """A job was routed here and waits."""

    @abstractmethod
    def remove(self, job_id: str) -> JobRecord:
        """Take a waiting job out (cancelled, or moving to another replica)."""

    @abstractmethod
    def pop_next(self) -> JobRecord | None:
        """The job to admit now, removed from the queue; None when nothing waits."""

    def ended(self, tenant: str) -> None:
        """A job of ``tenant`` that this policy admitted has ended (finished or cancelled)."""
        return None

    def charge(self, tenant: str, amount: float) -> None:
        """``tenant`` consumed ``amount`` weighted tokens of service here (negative: a refund)."""
        return None

    def standing(self, tenant: str) -> float | None:
        """How soon ``tenant`` is served here (higher: sooner); None: the order is not by
        tenant, so no slot is held for one."""
        return None

    def best_standing(self, but: str) -> float | None:
        """The highest standing among the other tenants queued here; None if none."""
        return None

    def deficit(self, tenant: str) -> float:
        """DLPM's credit for ``tenant`` here; 0 for policies without one."""
        return 0.0

    def counter(self, tenant: str) -> float:
        """VTC's virtual counter for ``tenant`` here; 0 for policies without one."""
        return 0.0
