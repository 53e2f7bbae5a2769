"""Observability wiring: what ``/metrics`` shows beyond the counters the request path updates.

``Telemetry`` only reads; it never drives admission (the engines' load goes from
``gateway.engine_watch`` to the dispatcher directly). It

- bounds the labels of ``GatewayMetrics`` to the configured tenants and models;
- registers a collector that reads ``Scheduler.stats()`` at scrape time (queues, in-flight,
  deficits and virtual counters, served weighted tokens, decisions, predicted prefix hits)
  together with Jain's fairness index over a sliding window (``gateway.fairness_window``);
- re-exports the engine readings that ``EngineWatch`` took as ``fairgate_engine_*{model,
  replica}``;
- every ``interval`` seconds, takes a fairness sample and follows each replica's engine
  restarts (``info()["engine"]["restarts"]``, from its supervisor) into
  ``fairgate_replica_restarts_total``. A scrape changes nothing.

Everything runs on the event loop's thread, like the scheduler itself, so reading its state
needs no lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fairgate.gateway.engine_watch import EngineReading
from fairgate.gateway.fairness_window import DEFAULT_WINDOW_S, FairnessWindow
from fairgate.gateway.metrics import GatewayMetrics
from fairgate.gateway.periodic import Periodic
from fairgate.replicas.engine_metrics import ENGINE_METRICS, Kind
from fairgate.scheduler.stats import SchedulerStats

log = logging.getLogger("fairgate.telemetry")
SAMPLE_INTERVAL_S = 1.0

# (model, replica id, replica) of every replica the gateway holds
ReplicaList = Callable[[], Iterable[tuple[str, str, Any]]]


class Telemetry:
    def __init__(
        self,
        metrics: GatewayMetrics,
        registry: CollectorRegistry,
        *,
        stats: Callable[[], SchedulerStats],
        replicas: ReplicaList,
        engines: Mapping[str, EngineReading],
        interval: float = SAMPLE_INTERVAL_S,
        fairness_window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.stats = stats
        self.list_replicas = replicas
        self.engines = engines  # read-only view of the engine watch's last readings
        self.interval = interval
        self.clock = clock
        self.fairness = FairnessWindow(fairness_window_s)
        self._loop = Periodic(self._step, lambda: self.interval, name="fairgate-telemetry", log=log)
        self._restarts: dict[str, int] = {}  # last restart count seen per replica
        self._served: dict[str, float] = {}  # served weighted tokens as last exported
        self._replicas: dict[str, str] = {}  # replica id -> model, series created
        self.collector = SchedulerCollector(self)
        registry.register(self.collector)

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _step(self) -> None:
        self.refresh()

    # refresh ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Follow replicas and their restarts, take a fairness sample."""
        self.sync_replicas()
        self.sample(self.stats())

    def sync_replicas(self) -> None:
        """Create new replicas' series at zero, drop those of replicas that are gone, and
        turn each supervisor's restart count into counter increments."""
        metrics = self.metrics
        current: dict[str, str] = {}
        for model, replica_id, replica in self.list_replicas():
            current[replica_id] = model
            if replica_id not in self._replicas:
                metrics.replica_added(model, replica_id)
            restarts = _restarts(replica)
            if restarts is not None:
                seen = self._restarts.get(replica_id, 0)
                if restarts > seen:
                    metrics.replica_restarts.labels(metrics.model_label(model), replica_id).inc(
                        restarts - seen
                    )
                self._restarts[replica_id] = restarts  # lower: a new supervisor counts anew
        for replica_id, model in self._replicas.items():
            if replica_id not in current:
                metrics.replica_removed(model, replica_id)
                self._restarts.pop(replica_id, None)
        self._replicas = current

    def sample(self, stats: SchedulerStats) -> None:
        self.fairness.observe(
            self.clock(),
            {t.tenant: t.served_tokens for t in stats.tenants.values()},
            {t.tenant: t.weight for t in stats.tenants.values()},
            [t.tenant for t in stats.tenants.values() if t.queued or t.inflight],
        )

    def served_total(self, tenant: str, served: float) -> float:
        """Served weighted tokens as a counter: the scheduler may correct a tenant's charge
        down (the engine found more cached than predicted); the counter holds its highest
        value until service passes it again, so ``rate()`` never sees a reset."""
        value = max(self._served.get(tenant, 0.0), served)
        self._served[tenant] = value
        return value


def _restarts(replica: Any) -> int | None:
    info = getattr(replica, "info", None)
    if not callable(info):
        return None
    try:
        engine = info().get("engine") or {}
        value = engine.get("restarts")
    except Exception:
        return None
    return int(value) if isinstance(value, int | float) else None


class SchedulerCollector(Collector):
    """Reads the scheduler, the fairness window and the last engine readings at scrape time."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def describe(self) -> list[Metric]:
        return []  # names are checked by tests, not at registration (collect reads live state)

    def collect(self) -> Iterator[Metric]:
        stats = self.telemetry.stats()
        yield from self._tenants(stats)
        yield from self._scheduler(stats)
        yield from self._replicas(stats)
        yield from self._engines()

    def _tenants(self, stats: SchedulerStats) -> Iterator[Metric]:
        metrics, telemetry = self.telemetry.metrics, self.telemetry
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "queued": GaugeMetricFamily(
                "fairgate_tenant_queued_jobs",
                "Jobs of the tenant waiting in the scheduler's queues.",
                labels=["tenant"],
            ),
            "inflight": GaugeMetricFamily(
                "fairgate_tenant_inflight_jobs",
                "Jobs of the tenant admitted to a replica and not finished.",
                labels=["tenant"],
            ),
            "weight": GaugeMetricFamily(
                "fairgate_tenant_weight", "The tenant's configured weight.", labels=["tenant"]
            ),
            "deficit": GaugeMetricFamily(
                "fairgate_tenant_deficit_weighted_tokens",
                "DLPM deficit (credit) of the tenant, summed over replicas; 0 under other "
                "policies.",
                labels=["tenant"],
            ),
            "virtual": GaugeMetricFamily(
                "fairgate_tenant_vtc_weighted_tokens",
                "VTC virtual token counter of the tenant, the largest over replicas; 0 under other "
                "policies.",
                labels=["tenant"],
            ),
            "served": CounterMetricFamily(
                "fairgate_tenant_served_weighted_tokens",
                "Weighted service the tenant received: uncached prompt tokens * w_p + "
                "generated tokens * w_q (not divided by the weight).",
                labels=["tenant"],
            ),
        }
        for tenant in stats.tenants.values():
            label = [metrics.tenant_label(tenant.tenant)]
            families["queued"].add_metric(label, tenant.queued)
            families["inflight"].add_metric(label, tenant.inflight)
            families["weight"].add_metric(label, tenant.weight)
            families["deficit"].add_metric(label, tenant.deficit)
            families["virtual"].add_metric(label, tenant.virtual_counter)
            families["served"].add_metric(
                label, telemetry.served_total(tenant.tenant, tenant.served_tokens)
            )
        yield from families.values()

    def _scheduler(self, stats: SchedulerStats) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "fairgate_scheduler_decisions",
            "Scheduling decisions: route (a replica picked for an arriving or re-routed job) "
            "and admit (a queued job released to its replica).",
            labels=["kind"],
        )
        decisions.add_metric(["route"], stats.routed)
        decisions.add_metric(["admit"], stats.admitted)
        yield decisions
        reasons = CounterMetricFamily(
            "fairgate_scheduler_route_reasons",
            "Routing decisions by why the router took them (D²LPM: locality, spill, place, "
            "kept, guard = the load guard overrode the fair, local choice; Preble: exploit, "
            "explore).",
            labels=["reason"],
        )
        for reason, count in sorted(stats.route_reasons.items()):
            reasons.add_metric([reason], count)
        yield reasons
        fairness = self.telemetry.fairness
        yield GaugeMetricFamily(
            "fairgate_fairness_jain_index",
            "Jain's index of weight-normalised weighted tokens served to the active tenants "
            "over the last fairgate_fairness_window_seconds (1 = perfectly fair, 1/n = one "
            "tenant got everything).",
            value=fairness.index(),
        )
        yield GaugeMetricFamily(
            "fairgate_fairness_window_seconds",
            "Length of the sliding window of fairgate_fairness_jain_index.",
            value=fairness.window_s,
        )
        yield GaugeMetricFamily(
            "fairgate_fairness_active_tenants",
            "Tenants served, queued or running within the fairness window.",
            value=len(fairness.shares()),
        )

    def _replicas(self, stats: SchedulerStats) -> Iterator[Metric]:
        metrics = self.telemetry.metrics
        labels = ["model", "replica"]
        gauges = {
            "queued": GaugeMetricFamily(
                "fairgate_replica_queued_jobs",
                "Jobs routed to the replica and waiting in its local queue.",
                labels=labels,
            ),
            "inflight": GaugeMetricFamily(
                "fairgate_replica_inflight_jobs",
                "Jobs the gateway has admitted to the replica and not finished.",
                labels=labels,
            ),
            "limit": GaugeMetricFamily(
                "fairgate_replica_inflight_limit",
                "Most jobs the gateway admits to the replica at once.",
                labels=labels,
            ),
            "index": GaugeMetricFamily(
                "fairgate_prefix_index_tokens",
                "Tokens held in the gateway's prefix index of the replica.",
                labels=labels,
            ),
            "predicted_ratio": GaugeMetricFamily(
                "fairgate_prefix_predicted_hit_ratio",
                "Share of admitted prompt tokens the prefix index predicted cached, since start.",
                labels=labels,
            ),
            "actual_ratio": GaugeMetricFamily(
                "fairgate_prefix_hit_ratio",
                "Share of prompt tokens the engine reported cached, since start.",
                labels=labels,
            ),
        }
        counters = {
            "prompt": CounterMetricFamily(
                "fairgate_prefix_predicted_prompt_tokens",
                "Prompt tokens admitted to the replica (denominator of the predicted hit ratio).",
                labels=labels,
            ),
            "hit": CounterMetricFamily(
                "fairgate_prefix_predicted_hit_tokens",
                "Prompt tokens the prefix index predicted cached on the replica at admission.",
                labels=labels,
            ),
        }
        for replica in stats.replicas.values():
            label = [metrics.model_label(replica.model), replica.replica_id]
            gauges["queued"].add_metric(label, replica.queued)
            gauges["inflight"].add_metric(label, replica.inflight)
            gauges["limit"].add_metric(label, replica.inflight_limit)
            gauges["index"].add_metric(label, replica.index_tokens)
            counters["prompt"].add_metric(label, replica.prompt_tokens)
            counters["hit"].add_metric(label, replica.predicted_hit_tokens)
            if replica.prompt_tokens:
                gauges["predicted_ratio"].add_metric(
                    label, replica.predicted_hit_tokens / replica.prompt_tokens
                )
            actual = metrics.prefix_hit_ratio(replica.model, replica.replica_id)
            if actual is not None:
                gauges["actual_ratio"].add_metric(label, actual)
        yield from gauges.values()
        yield from counters.values()

    def _engines(self) -> Iterator[Metric]:
        metrics = self.telemetry.metrics
        labels = ["model", "replica"]
        up = GaugeMetricFamily(
            "fairgate_engine_up",
            "1 when the replica engine's /metrics was read at the last attempt.",
            labels=labels,
        )
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for spec in ENGINE_METRICS:
            if spec.name in families:
                continue
            family = GaugeMetricFamily if spec.kind is Kind.GAUGE else CounterMetricFamily
            families[spec.name] = family(spec.name, spec.documentation, labels=labels)
        for replica_id, reading in sorted(self.telemetry.engines.items()):
            label = [metrics.model_label(reading.model), replica_id]
            up.add_metric(label, 0 if reading.metrics is None else 1)
            if reading.metrics is None:
                continue
            for name, value in reading.metrics.values.items():
                families[name].add_metric(label, value)
        yield up
        yield from (f for f in families.values() if f.samples)
