"""Deficit Longest Prefix Match (Cao et al., "Locality-aware Fair Scheduling in LLM Serving",
arXiv 2501.14312, Algorithm 1), one instance per replica.

Each tenant has a deficit (credit, in weighted tokens). Admission takes, among the tenants
whose deficit is positive, the most local waiting job: the one whose uncached prompt (the
prefill it needs) is least, as the paper's longest match; prefills within ``tolerance``
typical jobs of the least count as equally local, and among those the most credit (per
unit of weight) goes first (``_local_first``). ``slack``, when set, further keeps out the
tenants more than that far behind the most credit (0: credit decides, locality breaks ties;
the previous default, which reloaded a document for nearly every question of long-document
QA). The admitted job's prompt is charged at once (uncached * w_p + cached * w_c, corrected
when the engine reports its real cached count) and, once outputs have been measured, its
expected output * w_q too (``charges_ahead``: settled at the end, tokens past the estimate
charged as they stream); before that, generated tokens are charged as they stream. When no
backlogged tenant has credit, every backlogged tenant is refilled by Q_u * weight: as many
rounds at once as it takes for one of them to turn positive, computed in O(tenants).

Q_u (``q``) is ``quantum`` or ``quantum_jobs`` of the median tenant's typical job with its
prompt uncached, whichever is more: a quantum at least one miss, as in deficit round robin,
where the quantum is at least the largest packet. The paper's DLPM keeps serving a tenant's
cached work while its deficit allows and only then moves on, which needs a deficit that
outlasts the miss that loaded the prefix: with Q_u = 1024 against 10k-token documents
every miss put the tenant 9 rounds in debt and the turn went to whoever had credit,
whatever was cached (long-document QA: 1.69x VTC's throughput; with Q_u one typical job
2.47x). The price is the bound below, which grows with Q_u.

No banked credit: a tenant with nothing queued or running keeps debt but not credit (its
deficit is capped at 0 when its last job ends and again when it returns), as in deficit round
robin. Without the cap, a tenant refilled while others were served could leave, return, and
burst. An admitted job keeps its tenant backlogged until it ends (``ended``). With the cap at
an empty queue, a client that keeps a few requests in flight lost its credit at every batch
boundary, for the few milliseconds between its answers and its next requests, and missed the
refills made then (when the boundary's admissions find no one in credit), while a flood that
always had something queued collected them (bench.peers' flood: the flood's deficit at +400
to +950 while the light tenant sharing its replica sat at -84). The price, measured: long-
document QA, where tenants run long jobs with nothing queued, keeps refilling them (2.28x
VTC's throughput at seed 1 against 2.47x; bench/RESULTS.md).

Locality has a bound where the ledger is shared (``_overdue``): a head passed over for a more
local job while its tenant had as much credit goes first once the work admitted past it
reaches its own miss's prefill. Other replicas' refills can keep the tenants cached here in
credit, and a tenant sent here from the replica that holds its prefix waited with its credit
unspent (through the gateway, a light tenant's jobs for 6.5 s in 2 runs of 34).

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
        *,
        quantum_jobs: float = 0.0,
        tolerance: float = 0.0,
        prompt_weight: float = 1.0,
    ) -> None:
        super().__init__(tenants)
        self.ledger: Ledger = ledger
        self.quantum = quantum
        self.quantum_jobs = quantum_jobs
        self.slack = slack  # None: every credited tenant (the paper's DLPM)
        self.tolerance = tolerance
        self.prompt_weight = prompt_weight
        self._queue = PrefixQueue(tree)
        self._deficits = ledger.deficits
        self._passed: dict[str, float] = {}  # tenant -> work admitted here past its head
        self.refills = 0

    @property
    def q(self) -> float:
        """Q_u: ``quantum``, or ``quantum_jobs`` of the median tenant's typical job (its prompt
        uncached) when that is more. A quantum below one miss sends a tenant into a debt of
        many rounds at every miss, and with it the turn to whoever has credit, whatever is
        cached: long-document QA then reloads a document for nearly every question."""
        return max(self.quantum, self.quantum_jobs * self.tenants.typical_job())

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
            grant = self.q * self.tenants.weight(tenant)
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
        heads = {t: h for t in self._near_lead(eligible) if (h := self._queue.head(t))}
        if not heads:  # pragma: no cover - eligible tenants are backlogged
            return None
        need = self._need(heads)
        if not self.ledger.shared:
            chosen = self._local_first(heads, need)
        else:
            chosen = self._overdue(heads, need) or self._local_first(heads, need)
            self._pass_over(chosen, heads, need)
        # admitted, the job keeps its tenant backlogged until it ends (``ended``)
        return self._queue.remove(chosen.job_id)

    def ended(self, tenant: str) -> None:
        if self.ledger.leave(tenant):
            self._cap(tenant)

    def _need(self, heads: dict[str, tuple[JobRecord, int]]) -> dict[str, float]:
        """Each head's prefill here: its uncached prompt * w_p."""
        return {
            t: (len(record.job.prompt) - match) * self.prompt_weight
            for t, (record, match) in heads.items()
        }

    def _overdue(
        self, heads: dict[str, tuple[JobRecord, int]], need: dict[str, float]
    ) -> JobRecord | None:
        """The head passed over for locality longest, once the work admitted past it (while
        it had as much credit as the job admitted) reaches its own miss's prefill; asked only
        where the ledger is shared by more than one replica.

        Within one replica locality is bounded by its rounds: the tenants cached here run
        out of credit and the next refill is made here. In cluster scope the other
        replicas' refills can keep them in credit, and a tenant whose prefix is cached
        elsewhere waited behind them with its credit unspent (through the gateway, in 2 runs
        of 34: a light tenant's jobs sent to the other replica waited 6.5 s, 20 jobs' time).
        Past a miss's worth of others' work, waiting saves no prefill; in one replica the
        same rule cost long-document QA 30% more reloads (bench/RESULTS.md)."""
        due = [t for t in heads if self._passed.get(t, 0.0) >= max(need[t], 1.0)]
        if not due:
            return None
        return heads[max(due, key=lambda t: (self._passed[t], -heads[t][0].seq))][0]

    def _pass_over(
        self, chosen: JobRecord, heads: dict[str, tuple[JobRecord, int]], need: dict[str, float]
    ) -> None:
        """Count the work admitted past each head that needs more prefill than ``chosen``, if
        its tenant has as much credit; a tenant admitted, out of credit or gone starts over."""
        weight = self.tenants.weight
        mine = self._deficits.get(chosen.tenant, 0.0) / weight(chosen.tenant)
        passed = {}
        for t in heads:
            if t == chosen.tenant or need[t] <= need[chosen.tenant]:
                continue
            passed[t] = self._passed.get(t, 0.0)
            if self._deficits.get(t, 0.0) / weight(t) >= mine:
                passed[t] += chosen.expected_work
        self._passed = passed

    def _local_first(
        self, heads: dict[str, tuple[JobRecord, int]], need: dict[str, float]
    ) -> JobRecord:
        """The paper's rule: the most local job goes first, measured as the prefill it needs
        (uncached prompt * w_p), with differences up to ``tolerance`` typical jobs counted
        as none; among those the most credit (per unit of weight), then the earliest.

        Without the tolerance a flood whose prompts are cached on its replica, as the light
        tenants' are on theirs, would go first by a token or a block of match and spend its
        whole quantum while a light tenant with more credit waited (measured through the
        gateway: the lights at 0.2 of an equal share); where one job is cached and the other
        needs a whole document, locality decides."""
        near = min(need.values()) + self.tolerance * self.tenants.typical_job()
        weight = self.tenants.weight
        tenant = max(
            (t for t in heads if need[t] <= near),
            key=lambda t: (self._deficits.get(t, 0.0) / weight(t), -heads[t][0].seq),
        )
        return heads[tenant][0]

    def _near_lead(self, eligible: list[str]) -> list[str]:
        """The tenants whose credit per unit of weight is within ``slack`` of the most; every
        eligible tenant when ``slack`` is None (the paper's rule: credits lie in (0, Q_u])."""
        if self.slack is None:
            return eligible
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
                grant = self.q * self.tenants.weight(tenant)
                self._deficits[tenant] = min(self._deficits[tenant], max(before, grant))

    def deficit(self, tenant: str) -> float:
        return self._deficits.get(tenant, 0.0)

    def standing(self, tenant: str) -> float | None:
        return self._deficits.get(tenant, 0.0) / self.tenants.weight(tenant)

    def best_standing(self, but: str) -> float | None:
        others = (self.standing(t) for t in self._queue.tenants() if t != but)
        return max((s for s in others if s is not None), default=None)

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
        weight, quantum = self.tenants.weight, self.q
        rounds = min(
            math.floor(-self._deficits.get(t, 0.0) / (quantum * weight(t))) + 1 for t in here
        )
        rounds = max(rounds, 1)
        before = {t: self._deficits.get(t, 0.0) for t in self.ledger.backlogged()}
        raised = {t: d + rounds * quantum * weight(t) for t, d in before.items()}
        lead = quantum + max(0.0, max(raised[t] / weight(t) for t in here))
        for t, d in raised.items():
            self._deficits[t] = max(before[t], min(d, lead * weight(t)))
        self.refills += rounds
