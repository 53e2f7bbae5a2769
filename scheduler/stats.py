"""Read-only snapshots of the scheduler's state, for metrics and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field


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
