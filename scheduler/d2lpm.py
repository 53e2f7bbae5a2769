"""Double Deficit LPM routing (Cao et al., arXiv 2501.14312, §4, "D²LPM").

The router keeps a deficit per (tenant, replica), charged with the service the tenant's jobs
consume on that replica: the uncached prompt tokens * w_p the router expects at routing time,
generated tokens * w_q as they stream, corrected by the engine's real cached count. A job goes:

1. to the least loaded candidate, if loads are too uneven (the same guard as the LPM router);
2. else to the shortest queue among replicas that hold the job's longest prefix match *and*
   where the tenant's deficit is positive (a match covering no more than ``cache_threshold``
   of the prompt counts as none, as in SGLang's router);
3. else to the replica with positive deficit that has the longest match (ties: shortest queue);
4. and when the tenant has credit on no candidate, every candidate's deficit is refilled by
   Q_w * weight (as many rounds as it takes for one to turn positive) before step 2.

So a tenant follows its cached prefix until it has used its share of that replica, then
spills to replicas where it still has credit: locality for the light tenants, spreading for
the heavy one. Step 3 differs from "any replica with positive deficit" only in preferring the
one with more of the prefix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fairgate.scheduler.config import SchedulerConfig
from fairgate.scheduler.job import Job
from fairgate.scheduler.router import C, Router, imbalanced, least_loaded
from fairgate.scheduler.tenants import TenantBook


class D2LPM(Router):
    def __init__(self, config: SchedulerConfig, tenants: TenantBook) -> None:
        super().__init__(config, tenants)
        self._deficits: dict[str, dict[str, float]] = {}  # tenant -> replica -> credit
        self.refills = 0

    def route(self, job: Job, candidates: Sequence[C]) -> C:
        cfg = self.config
        if len(candidates) > 1 and imbalanced(candidates, cfg.load_gap, cfg.balance_rel_threshold):
            return least_loaded(candidates)
        credit = self._deficits.setdefault(job.tenant, {})
        if all(credit.get(c.replica_id, 0.0) <= 0 for c in candidates):
            self._refill(job.tenant, credit, candidates)
        matches = [c.prefix_match(job) for c in candidates]
        if not job.prompt or max(matches) / len(job.prompt) <= cfg.cache_threshold:
            # A short match (a chat template's first tokens) is no locality worth following.
            matches = [0] * len(candidates)
        best = max(matches)
        positive = [
            (m, c)
            for m, c in zip(matches, candidates, strict=True)
            if credit.get(c.replica_id, 0.0) > 0
        ]
        top = [c for m, c in positive if m == best]
        if top:
            return least_loaded(top)
        best_positive = max(m for m, _ in positive)
        return least_loaded([c for m, c in positive if m == best_positive])

    def charge(self, tenant: str, replica_id: str, amount: float) -> None:
        credit = self._deficits.setdefault(tenant, {})
        credit[replica_id] = credit.get(replica_id, 0.0) - amount

    def forget(self, replica_id: str) -> None:
        for credit in self._deficits.values():
            credit.pop(replica_id, None)

    def deficits(self, tenant: str) -> dict[str, float]:
        return dict(self._deficits.get(tenant, {}))

    def _refill(self, tenant: str, credit: dict[str, float], candidates: Sequence[C]) -> None:
        grant = self.config.replica_quantum * self.tenants.weight(tenant)
        rounds = min(math.floor(-credit.get(c.replica_id, 0.0) / grant) + 1 for c in candidates)
        rounds = max(rounds, 1)
        for c in candidates:
            credit[c.replica_id] = credit.get(c.replica_id, 0.0) + rounds * grant
        if all(credit[c.replica_id] <= 0 for c in candidates):  # float rounding at exactly 0
            for c in candidates:
                credit[c.replica_id] += grant
        self.refills += rounds
