"""Read-only snapshots of the scheduler's state, for metrics and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fairgate.scheduler.fairness import Ledger
from fairgate.scheduler.replica import Replica
from fairgate.scheduler.router import Router
from fairgate.scheduler.tenants import TenantAccount, TenantBook


@dataclass(slots=True, frozen=True)
class TenantStats:
    """``deficit``: DLPM credit summed over replicas; ``virtual_counter``: VTC counter, the
    largest over replicas; both 0 under policies without them. ``served_tokens``: weighted
    service (uncached prompt * w_p + generated * w_q), not divided by weight.
    ``replica_deficits``: D²LPM's per-replica credit (empty under other routers)."""

    tenant: str
    weight: float
    queued: int
    inflight: int
    deficit: float
    virtual_counter: float
    served_tokens: float
    replica_deficits: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class ReplicaStats:
    """``predicted_hit_tokens`` / ``prompt_tokens``: what the prefix index expected cached at
    admission; ``cached_tokens`` / ``reported_prompt_tokens``: what the engine reported."""

    replica_id: str
    model: str
    healthy: bool
    queued: int
    inflight: int
    inflight_limit: int
    prompt_tokens: int
    predicted_hit_tokens: int
    reported_prompt_tokens: int
    cached_tokens: int
    index_tokens: int


@dataclass(slots=True, frozen=True)
class SchedulerStats:
    tenants: dict[str, TenantStats]
    replicas: dict[str, ReplicaStats]
    routed: int  # routing decisions (arrivals and re-routes)
    admitted: int  # admission decisions (dispatches)
    # Why the router chose what it chose, e.g. D²LPM's "locality", "spill", "place", "guard"
    # (the load guard overrode the fair, local choice): a counter per reason.
    route_reasons: dict[str, int] = field(default_factory=dict)
    router_refills: int = 0  # D²LPM per-replica refill rounds

    @property
    def decisions(self) -> int:
        return self.routed + self.admitted


def snapshot(
    replicas: Sequence[Replica], tenants: TenantBook, router: Router, routed: int, admitted: int
) -> SchedulerStats:
    # Under cluster scope every replica shares one ledger: count it once.
    ledgers = list(
        {
            id(r.queue.ledger): r.queue.ledger for r in replicas if r.queue.ledger is not None
        }.values()
    )
    return SchedulerStats(
        {a.name: _tenant_stats(a, ledgers, router) for a in tenants},
        {r.replica_id: _replica_stats(r) for r in replicas},
        routed,
        admitted,
        dict(router.reasons),
        router.refills,
    )


def _tenant_stats(account: TenantAccount, ledgers: list[Ledger], router: Router) -> TenantStats:
    name = account.name
    return TenantStats(
        tenant=name,
        weight=account.weight,
        queued=account.queued,
        inflight=account.inflight,
        deficit=sum(ledger.deficits.get(name, 0.0) for ledger in ledgers),
        virtual_counter=max((ledger.counters.get(name, 0.0) for ledger in ledgers), default=0.0),
        served_tokens=account.served,
        replica_deficits=router.deficits(name),
    )


def _replica_stats(r: Replica) -> ReplicaStats:
    return ReplicaStats(
        replica_id=r.replica_id,
        model=r.model,
        healthy=r.healthy,
        queued=len(r.queue),
        inflight=len(r.inflight),
        inflight_limit=r.inflight_limit,
        prompt_tokens=r.prompt_tokens,
        predicted_hit_tokens=r.predicted_hit_tokens,
        reported_prompt_tokens=r.reported_prompt_tokens,
        cached_tokens=r.cached_tokens,
        index_tokens=r.tree.tokens,
    )
