"""Observability wiring: what ``/metrics`` shows beyond the counters the request path updates.

``Telemetry`` is built by the runtime. It

- bounds the labels of ``GatewayMetrics`` to the configured tenants and models;
- registers a collector that reads ``Scheduler.stats()`` at scrape time (queues, in-flight,
  deficits and virtual counters, served weighted tokens, decisions, predicted prefix hits)
  together with Jain's fairness index over a sliding window (``gateway.fairness_window``);
- every ``interval`` seconds, reads each replica's engine ``/metrics`` (replicas with a
  ``url``: the ``openai`` and ``vllm`` providers; ``sim`` replicas have none) and re-exports
  the engine's gauges and counters as ``fairgate_engine_*{model,replica}``; it also follows
  each replica's engine restarts (``info()["engine"]["restarts"]``, from its supervisor)
  into ``fairgate_replica_restarts_total``.

The engines are read in the background, never during a scrape: vLLM's ``/metrics`` can
answer seconds late under load (tests/support/VLLM_NOTES.md), and a scrape must not wait.
Everything runs on the event loop's thread, like the scheduler itself, so reading its state
needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fairgate.gateway.fairness_window import DEFAULT_WINDOW_S, FairnessWindow
from fairgate.replicas.engine_metrics import (
    ENGINE_METRICS,
    EngineMetrics,
    Kind,
    scrape_engine_metrics,
)
from fairgate.scheduler.stats import SchedulerStats

if TYPE_CHECKING:
    from fairgate.gateway.runtime import Runtime

log = logging.getLogger("fairgate.telemetry")
ENGINE_INTERVAL_S = 5.0


@dataclass(slots=True)
class EngineReading:
    model: str
    metrics: EngineMetrics | None  # None: the last read failed


class Telemetry:
    def __init__(
        self,
        runtime: Runtime,
        *,
        interval: float = ENGINE_INTERVAL_S,
        fairness_window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.runtime = runtime
        self.interval = interval
        self.clock = clock
        self.fairness = FairnessWindow(fairness_window_s)
        self.engines: dict[str, EngineReading] = {}
        self._client = client
        self._task: asyncio.Task[None] | None = None
        self._restarts: dict[str, int] = {}  # last restart count seen per replica
        self._served: dict[str, float] = {}  # served weighted tokens as last exported
        self._replicas: dict[str, str] = {}  # replica id -> model, series created
        runtime.metrics.restrict(
            tenants=runtime.tenants, models={m.name for m in runtime.config.models}
        )
        self.collector = SchedulerCollector(self)
        runtime.registry.register(self.collector)

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="fairgate-telemetry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("telemetry refresh failed")
            await asyncio.sleep(self.interval)

    # refresh ---------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Read every engine's metrics, follow restarts, take a fairness sample."""
        self.sync_replicas()
        await self.scrape_engines()
        self.sample(self.runtime.scheduler.stats())

    def replicas(self) -> list[tuple[str, str, Any]]:
        """(model, replica id, replica) of every replica the runtime holds."""
        return [
            (model.name, replica_id, replica)
            for model in list(self.runtime.models.values())
            for replica_id, replica in list(model.replicas.items())
        ]

    def sync_replicas(self) -> None:
        """Create new replicas' series at zero, drop those of replicas that are gone, and
        turn each supervisor's restart count into counter increments."""
        metrics = self.runtime.metrics
        current: dict[str, str] = {}
        for model, replica_id, replica in self.replicas():
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
                self.engines.pop(replica_id, None)
        self._replicas = current

    async def scrape_engines(self) -> None:
        targets = [
            (model, replica_id, url)
            for model, replica_id, replica in self.replicas()
            if (url := getattr(replica, "url", None))
        ]
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        client = self._client
        readings = await asyncio.gather(
            *(scrape_engine_metrics(client, url) for _, _, url in targets)
        )
        live = {replica_id for _, replica_id, _ in targets}
        for (model, replica_id, _), reading in zip(targets, readings, strict=True):
            self.engines[replica_id] = EngineReading(model, reading)
            self._feed_admission(replica_id, reading)
        for replica_id in list(self.engines):
            if replica_id not in live:
                del self.engines[replica_id]

    def _feed_admission(self, replica_id: str, reading: EngineMetrics | None) -> None:
        running = reading.get("fairgate_engine_requests_running") if reading else None
        waiting = reading.get("fairgate_engine_requests_waiting") if reading else None
        if running is not None and waiting is not None:
            self.runtime.dispatcher.engine_load(replica_id, int(running), int(waiting))

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
        return []  # names are checked by tests, not at registration (collect needs a runtime)

    def collect(self) -> Iterator[Metric]:
        telemetry = self.telemetry
        runtime = telemetry.runtime
        stats = runtime.scheduler.stats()
        telemetry.sync_replicas()
        telemetry.sample(stats)
        yield from self._tenants(stats)
        yield from self._scheduler(stats)
        yield from self._replicas(stats)
        yield from self._engines()

    def _tenants(self, stats: SchedulerStats) -> Iterator[Metric]:
        metrics, telemetry = self.telemetry.runtime.metrics, self.telemetry
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
        metrics = self.telemetry.runtime.metrics
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
        metrics = self.telemetry.runtime.metrics
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
