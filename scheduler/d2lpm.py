"""Double Deficit LPM routing (Cao et al., arXiv 2501.14312, §4, "D²LPM").

The router keeps a deficit per (tenant, replica), charged with the work the tenant's jobs
bring to that replica: at routing, the job's *expected* work (uncached prompt * w_p + cached
prompt * w_c, with the prefix the replica holds, plus the expected output * w_q: the tenant's
recent average, at most ``max_tokens``); settled when the job ends, at the engine's cached
count and the tokens it generated. Charging expected output at routing matters: decode is
most of a chat job's cost, and a router that learns of it only as tokens stream lets dozens of
queued jobs follow one prefix on credit they have already spent. A job goes:

1. when the tenant has credit on no candidate, every candidate's deficit is refilled by
   Q_w * weight (as many rounds as it takes for one to turn positive);
2. among replicas where its deficit is positive and some prefix is cached (a match covering
   no more than ``cache_threshold`` of the prompt counts as none, as in SGLang's router), or
   that have room for it, to the one where it costs least: its own work there (the cached
   prefix is cheap) plus the queued work it would wait behind under a fair local queue (its
   tenant's own, and about one job's worth from each other tenant queued there); ties go to
   the longer match, then the least work. "locality" when it is the cluster's longest
   match, "spill" otherwise. (The paper takes the longest match among credited replicas;
   measured through the gateway, that sent two light tenants with short prefixes to one
   replica behind each other while the flood alone had the other.)
3. a prefix cached nowhere is "placed" where it fits in the prefix index without evicting,
   so that each tenant's hot prefix stays resident while the caches can hold them all, and
   among those beside the tenants that ask the most (see ``_place``); a tenant out of credit
   where its prefix is cached stays there ("kept") when every replica it has credit on would
   have to evict to take it (its local queue still orders it fairly), and is refilled there
   alone, so that its debt on that replica stays bounded;
4. the load guard overrides that choice ("guard") only for real overload: the chosen
   replica's queued work exceeds the least loaded one's by more than ``work_gap`` weighted
   tokens and by ``balance_rel_threshold`` times.

Every decision is counted by reason (``reasons``; exported as a metric by the gateway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fairgate.scheduler.config import SchedulerConfig
from fairgate.scheduler.job import Job
from fairgate.scheduler.router import C, Candidate, Router, least_work, overloaded
from fairgate.scheduler.tenants import TenantBook


class D2LPM(Router):
    def __init__(self, config: SchedulerConfig, tenants: TenantBook) -> None:
        super().__init__(config, tenants)
        self._deficits: dict[str, dict[str, float]] = {}  # tenant -> replica -> credit

    def route(self, job: Job, candidates: Sequence[C]) -> C:
        cfg = self.config
        credit = self._deficits.setdefault(job.tenant, {})
        matches = [c.prefix_match(job) for c in candidates]
        if all(credit.get(c.replica_id, 0.0) <= 0 for c in candidates):
            self._refill(job.tenant, credit, candidates)
        if not job.prompt or max(matches) / len(job.prompt) <= cfg.cache_threshold:
            # A short match (a chat template's first tokens) is no locality worth following.
            matches = [0] * len(candidates)
        best = max(matches)
        positive = [
            (m, c)
            for m, c in zip(matches, candidates, strict=True)
            if credit.get(c.replica_id, 0.0) > 0
        ]
        if best > 0 and not any(m or c.cache_room() >= len(job.prompt) for m, c in positive):
            # Spilling would evict some tenant's resident prefix: stay with the cached one.
            choice = least_work([c for m, c in zip(matches, candidates, strict=True) if m == best])
            if credit.get(choice.replica_id, 0.0) <= 0:  # refilled there alone: debt stays bounded
                self._refill(job.tenant, credit, [choice])
            return self._guard("kept", choice, candidates, job.tenant)
        if max(m for m, _ in positive) == 0:
            choice = self._place(job, [c for _, c in positive])
            return self._guard("place", choice, candidates, job.tenant)
        usable = [(m, c) for m, c in positive if m or c.cache_room() >= len(job.prompt)]
        m, choice = min(usable, key=lambda mc: (self._cost(job, *mc), -mc[0], mc[1].work()))
        return self._guard("locality" if m == best else "spill", choice, candidates, job.tenant)

    def _place(self, job: Job, pool: Sequence[C]) -> C:
        """A prefix cached nowhere goes where it fits without evicting (so the prefixes that
        are resident stay so while the caches can hold them all), then where the tenants
        present ask the most (an empty replica first), then to the least work.

        Under a fair local order a newcomer takes its share from the tenants that ask more
        than theirs, so it does best beside the most demanding. Measured in bench.fairness'
        flood: least work alone put both light tenants on one replica and the flood alone on
        the other, where no local order could limit it (each light 0.75 of an equal share)."""
        fits = [c for c in pool if c.cache_room() >= len(job.prompt)]
        return min(fits or pool, key=lambda c: (-self._weakest(c, job.tenant), c.work()))

    def _weakest(self, replica: Candidate, tenant: str) -> float:
        """The smallest outstanding demand (jobs per unit of weight) among the other tenants
        with jobs on ``replica``; infinite when there are none."""
        demands = [self._demand(t) for t in replica.tenants() if t != tenant]
        return min(demands, default=math.inf)

    def _demand(self, tenant: str) -> float:
        account = self.tenants.account(tenant)
        return (account.queued + account.inflight) / account.weight

    def _cost(self, job: Job, match: int, replica: Candidate) -> float:
        """What the job costs on ``replica`` in weighted tokens: its own work there (the
        prefix cached there is cheap) plus the queued work it would wait behind. Locality
        decides when the queues ahead are alike; a light tenant does not follow its prefix
        to a replica where other tenants are queued when one nearby has room for it."""
        own = self._own(job, match)
        return replica.work_ahead(job.tenant, own) + own

    def _own(self, job: Job, match: int) -> float:
        cfg = self.config
        hit = max(0, min(match, len(job.prompt) - 1))
        output = self.tenants.expected_output(job.tenant, job.max_tokens)
        return (
            (len(job.prompt) - hit) * cfg.prompt_weight
            + hit * cfg.cached_prompt_weight
            + output * cfg.completion_weight
        )

    def _guard(self, reason: str, choice: C, candidates: Sequence[C], tenant: str) -> C:
        """Overload is a gap of ``work_gap``, or of ``replica_quantum_jobs`` typical jobs when
        those are larger (a few long-document jobs are no overload)."""
        cfg = self.config
        gap = max(cfg.work_gap, cfg.replica_quantum_jobs * self.tenants.typical_job())
        if len(candidates) > 1 and overloaded(choice, candidates, gap, cfg.balance_rel_threshold):
            reason, choice = "guard", least_work(candidates)
        self.reasons[reason] += 1
        return choice

    def charge(self, tenant: str, replica_id: str, amount: float) -> None:
        credit = self._deficits.setdefault(tenant, {})
        before = credit.get(replica_id, 0.0)
        credit[replica_id] = before - amount
        if amount < 0:  # a settled overestimate is no more than one refill's credit
            credit[replica_id] = min(credit[replica_id], max(before, self._grant(tenant)))

    def forget(self, replica_id: str) -> None:
        for credit in self._deficits.values():
            credit.pop(replica_id, None)

    def deficits(self, tenant: str) -> dict[str, float]:
        return dict(self._deficits.get(tenant, {}))

    def _grant(self, tenant: str) -> float:
        typical = self.config.replica_quantum_jobs * self.tenants.typical_job()
        return max(self.config.replica_quantum, typical) * self.tenants.weight(tenant)

    def _refill(self, tenant: str, credit: dict[str, float], candidates: Sequence[C]) -> None:
        """Q_w, or ``replica_quantum_jobs`` typical jobs (``TenantBook.typical_job``) when those
        are larger: a quantum smaller than one job (a 5k-token document question against
        Q_w = 4096) sends every job of a tenant to another replica than its last, and each
        one misses (measured in bench.fairness.sweep: 46% hits instead of 96% on 8 replicas)."""
        grant = self._grant(tenant)
        rounds = min(math.floor(-credit.get(c.replica_id, 0.0) / grant) + 1 for c in candidates)
        rounds = max(rounds, 1)
        for c in candidates:
            credit[c.replica_id] = credit.get(c.replica_id, 0.0) + rounds * grant
        if all(credit[c.replica_id] <= 0 for c in candidates):  # float rounding at exactly 0
            for c in candidates:
                credit[c.replica_id] += grant
        self.refills += rounds
