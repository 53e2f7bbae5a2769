"""Virtual Token Counter (Sheng et al., "Fairness in Serving Large Language Models", OSDI'24).

Each tenant has a counter of the service it received here, divided by its weight. Admission
takes the oldest waiting job of the backlogged tenant with the smallest counter. When a tenant's
queue goes from empty to non-empty its counter is lifted to the smallest counter among the
other backlogged tenants, so time spent idle is not banked as credit to burst with later.

Counters live in a ``fairness.Ledger`` (this replica's, or one shared by the cluster);
"backlogged" means having queued jobs within the ledger's scope.

Bound (the paper's Theorem, in this scheduler's terms, tested in tests/scheduler/test_vtc.py):
with one in-flight slot, for two tenants backlogged over an interval, the difference in their
weight-normalised service is at most 2U, U being the largest service of one request. Sketch:
when g is admitted, c_g <= c_f; afterwards g gains at most U before its next admission, so
|c_f - c_g| <= U at all times and any interval sees at most 2U. With k slots, U becomes kU.
"""

from __future__ import annotations

from fairgate.scheduler.fairness import Ledger
from fairgate.scheduler.fifo import SeqQueue
from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.policy import LocalPolicy
from fairgate.scheduler.tenants import TenantBook


class VTC(LocalPolicy):
    def __init__(self, tenants: TenantBook, ledger: Ledger) -> None:
        super().__init__(tenants)
        self.ledger: Ledger = ledger
        self._counters = ledger.counters
        self._queues: dict[str, SeqQueue] = {}  # tenants with jobs queued here
        self._tenant_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._tenant_of)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._tenant_of

    def push(self, record: JobRecord) -> None:
        tenant = record.tenant
        if self.ledger.enter(tenant):
            self._lift(tenant)
        queue = self._queues.get(tenant)
        if queue is None:
            queue = self._queues[tenant] = SeqQueue()
        queue.push(record)
        self._tenant_of[record.job_id] = tenant

    def remove(self, job_id: str) -> JobRecord:
        tenant = self._tenant_of.pop(job_id)
        queue = self._queues[tenant]
        record = queue.remove(job_id)
        if not queue:
            del self._queues[tenant]
        self.ledger.leave(tenant)
        return record

    def pop_next(self) -> JobRecord | None:
        best: tuple[float, int, str] | None = None
        for tenant, queue in self._queues.items():
            head = queue.peek()
            if head is None:  # pragma: no cover - empty queues are deleted
                continue
            key = (self._counters.get(tenant, 0.0), head.seq, tenant)
            if best is None or key < best:
                best = key
        if best is None:
            return None
        head = self._queues[best[2]].peek()
        if head is None:  # pragma: no cover
            return None
        return self.remove(head.job_id)

    def charge(self, tenant: str, amount: float) -> None:
        weight = self.tenants.weight(tenant)
        self._counters[tenant] = self._counters.get(tenant, 0.0) + amount / weight

    def counter(self, tenant: str) -> float:
        return self._counters.get(tenant, 0.0)

    def _lift(self, tenant: str) -> None:
        others = [self._counters.get(t, 0.0) for t in self.ledger.backlogged() if t != tenant]
        if others:
            self._counters[tenant] = max(self._counters.get(tenant, 0.0), min(others))
