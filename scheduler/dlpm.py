"""Deficit Longest Prefix Match (Cao et al., "Locality-aware Fair Scheduling in LLM Serving",
arXiv 2501.14312, Algorithm 1), one instance per replica.

Each tenant has a deficit (credit, in weighted tokens). Admission takes the waiting job with
the longest cached prefix among the tenants whose deficit is positive and within ``slack``
of the most credit (per unit of weight); ``slack`` = Q_u is the paper's rule (every credited
tenant), the default 0 lets locality break ties only, so that a flood with a warm cache
cannot spend a whole quantum while a tenant far ahead in credit waits (``_near_lead``). The
admitted job's prompt is charged at once (uncached * w_p + cached * w_c, corrected when the
engine reports its real cached count) and, once outputs have been measured, its expected
output * w_q too (``charges_ahead``: settled at the end, tokens past the estimate charged as
they stream); before that, generated tokens are charged as they stream. When no backlogged
tenant has credit, every backlogged tenant is refilled by Q_u * weight: as many rounds at once
as it takes for one of them to turn positive, computed in O(tenants) rather than looped.

No banked credit: a tenant whose queue here is empty keeps debt but not credit (its deficit is
capped at 0 when its queue empties and again when it returns), as in deficit round robin.
Without the cap, a tenant refilled while others were served could leave, return, and burst.

Accounts live in a ``fairness.Ledger``: this replica's own, or one shared by the cluster; a
refill is sized by the tenants waiting here and given to every tenant backlogged in the
ledger's scope, but raises no deficit more than Q_u * weight past the best credited tenant
queued here (per unit of weight), so never past 2 Q_u * weight (``_refill``).

Bound (tested in tests/scheduler/test_dlpm.py): with one in-flight slot, a backlogged tenant's
deficit stays in (-U, Q_u * weight] (it is admitted only with credit, one job adds at most U,
a refill stops at the first positive), both tenants receive the same refills while backlogged,
so their weight-normalised service differs by at most 2(U + Q_u) over any such interval.
"""

from __future__ import annotations

import math

from fairgate.scheduler.fairness import Ledger
from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.policy import LocalPolicy
from fairgate.scheduler.prefix_queue import PrefixQueue
from fairgate.scheduler.radix import RadixTree
from fairgate.scheduler.tenants import TenantBook


class DLPM(LocalPolicy):
    charges_ahead = True

    def __init__(
        self,
        tenants: TenantBook,
        ledger: Ledger,
        tree: RadixTree,
        quantum: float,
        slack: float | None = None,
    ) -> None:
        super().__init__(tenants)
        self.ledger: Ledger = ledger
        self.quantum = quantum
        self.slack = quantum if slack is None else slack  # = quantum: the paper's DLPM
        self._queue = PrefixQueue(tree)
        self._deficits = ledger.deficits
        self.refills = 0

    def __len__(self) -> int:
        return len(self._queue)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._queue

    def push(self, record: JobRecord) -> None:
        if self.ledger.enter(record.tenant):
            self._cap(record.tenant)
            self._lift(record.tenant)
        self._queue.add(record)

    def _lift(self, tenant: str) -> None:
        """A tenant that becomes backlogged joins the round where the best-placed backlogged
        tenant stands (its debt kept), rather than waiting for everyone's credit to run out
        (VTC's counter lift, in deficits): with a quantum worth many small jobs, a
        closed-loop tenant would otherwise wait a whole round at each return."""
        others = [self._deficits.get(t, 0.0) for t in self.ledger.backlogged() if t != tenant]
        lead = max(others, default=0.0)
        if lead > 0:
            grant = self.quantum * self.tenants.weight(tenant)
            self._deficits[tenant] = min(grant, self._deficits.get(tenant, 0.0) + lead)

    def remove(self, job_id: str) -> JobRecord:
        record = self._queue.remove(job_id)
        if self.ledger.leave(record.tenant):
            self._cap(record.tenant)
        return record

    def pop_next(self) -> JobRecord | None:
        here = self._queue.tenants()
        if not here:
            return None
        eligible = [t for t in here if self._deficits.get(t, 0.0) > 0]
        while not eligible:  # one pass unless rounding leaves every deficit at exactly 0
            self._refill(here)
            eligible = [t for t in here if self._deficits.get(t, 0.0) > 0]
        record = self._queue.best(self._near_lead(eligible))
        if record is None:  # pragma: no cover - eligible tenants are backlogged
            return None
        return self.remove(record.job_id)

    def _near_lead(self, eligible: list[str]) -> list[str]:
        """The tenants whose credit per unit of weight is within ``slack`` of the most: a
        longer prefix match may go ahead of more credit by that much and no more, so a
        flood with a warm cache cannot spend a whole quantum while a tenant far ahead in
        credit waits. With ``slack`` >= Q_u every eligible tenant is near (the paper's rule:
        credits lie in (0, Q_u])."""
        credit = {t: self._deficits.get(t, 0.0) / self.tenants.weight(t) for t in eligible}
        lead = max(credit.values())
        return [t for t in eligible if credit[t] >= lead - self.slack]

    def charge(self, tenant: str, amount: float) -> None:
        before = self._deficits.get(tenant, 0.0)
        self._deficits[tenant] = before - amount
        if amount < 0:
            if not self.ledger.is_backlogged(tenant):
                self._cap(tenant)  # a refund to an idle tenant must not become credit
            else:  # nor more than a quantum's (an overestimate settled late)
                grant = self.quantum * self.tenants.weight(tenant)
                self._deficits[tenant] = min(self._deficits[tenant], max(before, grant))

    def deficit(self, tenant: str) -> float:
        return self._deficits.get(tenant, 0.0)

    def _cap(self, tenant: str) -> None:
        if self._deficits.get(tenant, 0.0) > 0:
            self._deficits[tenant] = 0.0

    def _refill(self, here: list[str]) -> None:
        """Enough rounds for one tenant queued here to turn positive, given to every tenant
        backlogged in the ledger's scope; none is raised more than one quantum (per unit of
        weight) past the best credited tenant queued here, which holds at most one.

        The cap matters in cluster scope: a refill sized by the tenants queued on this
        replica would otherwise credit tenants queued elsewhere that are not spending (their
        replica is slower, or their jobs are held there) without bound. It is two quanta at
        most, not one: a tenant queued elsewhere that holds credit because a flood it
        shares a replica with was served here too keeps what it is owed (measured, a flat
        cap gave the flood 1.2x the light tenant's service in
        tests/scheduler/test_cluster_credit.py). For the tenants queued here it never binds
        (the rounds stop at the first positive deficit)."""
        weight = self.tenants.weight
        rounds = min(
            math.floor(-self._deficits.get(t, 0.0) / (self.quantum * weight(t))) + 1 for t in here
        )
        rounds = max(rounds, 1)
        before = {t: self._deficits.get(t, 0.0) for t in self.ledger.backlogged()}
        raised = {t: d + rounds * self.quantum * weight(t) for t, d in before.items()}
        lead = self.quantum + max(0.0, max(raised[t] / weight(t) for t in here))
        for t, d in raised.items():
            self._deficits[t] = max(before[t], min(d, lead * weight(t)))
        self.refills += rounds
