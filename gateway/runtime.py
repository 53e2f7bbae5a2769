"""Wiring: everything a running gateway holds, built from the configuration.

The runtime owns the models (tokenizer, reasoning markers, replicas), the dispatcher around
the scheduler, the recorder (ledger + metrics) and the health loop. The HTTP layer only
calls into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import CollectorRegistry

from fairgate.gateway.auth import KeyStore, StoredKey, Tenant, TenantKeys, digest
from fairgate.gateway.config import Config, ConfigError, ModelConfig
from fairgate.gateway.controls import TenantControls
from fairgate.gateway.dispatcher import Dispatcher
from fairgate.gateway.engine_watch import EngineWatch
from fairgate.gateway.metrics import GatewayMetrics
from fairgate.gateway.periodic import Periodic
from fairgate.gateway.recorder import Recorder
from fairgate.gateway.replica_set import MetricsListener, ModelRuntime, ReplicaSet
from fairgate.gateway.shared_keys import SYNC_S, open_shared_keys
from fairgate.gateway.telemetry import Telemetry
from fairgate.gateway.tenant_settings import TenantSettingsStore
from fairgate.metering.reasoning import Markers
from fairgate.metering.tokens import load_tokenizer
from fairgate.replicas.base import Replica
from fairgate.replicas.openai_http import OpenAIReplica
from fairgate.replicas.sim import SimReplica, SimSettings
from fairgate.scheduler import Scheduler, SchedulerConfig

if TYPE_CHECKING:
    from fairgate.gateway.fleet import Fleet
    from fairgate.replicas.manager import ReplicaManager

log = logging.getLogger("fairgate.runtime")
EMBEDDED_MODEL = "smollm2"
LOOP_LAG_WARNING_S = 1.0  # a loop this late makes 5 s connect and probe timeouts likely


def with_default_model(config: Config) -> Config:
    """With no models configured, serve the embedded SmolLM2 on one local vLLM replica
    (``model`` unset: the fleet converts the packaged GGUF on first start)."""
    if config.models:
        return config
    default = ModelConfig(name=EMBEDDED_MODEL, provider="vllm", reasoning="visible", replicas=1)
    return config.model_copy(update={"models": [default]})


def scheduler_config(config: Config) -> SchedulerConfig:
    return config.scheduler.to_scheduler_config()


def load_tenants(
    config: Config, shared: Iterable[StoredKey] = ()
) -> tuple[TenantKeys, dict[str, Tenant]]:
    ring = TenantKeys()
    tenants = {t.name: Tenant(t.name, t.weight) for t in config.tenants}
    for tenant in config.tenants:
        for key in tenant.api_keys:
            ring.add(digest(key), tenant.name)
    for stored in [*KeyStore(config.data_dir).load(), *shared]:
        tenants.setdefault(stored.tenant, Tenant(stored.tenant, stored.weight or 1.0))
        ring.add(stored.sha256, stored.tenant)
    return ring, tenants


class Runtime:
    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.tenant_settings = TenantSettingsStore(config.data_dir)
        self._file_tenants = config.tenants
        config = with_default_model(config)
        config = config.model_copy(update={"tenants": self.tenant_settings.apply(config.tenants)})
        self.config = config
        self.registry = registry or CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.keyring, self.tenants = load_tenants(config)
        self.scheduler = Scheduler(scheduler_config(config))
        for tenant in self.tenants.values():
            self.scheduler.set_tenant(tenant.name, tenant.weight)
        self.dispatcher = Dispatcher(
            self.scheduler,
            adaptive=config.scheduler.adaptive_inflight,
        )
        self.recorder = recorder or Recorder.open(config, self.metrics)
        self.controls = TenantControls.for_config(config, self.recorder.prices)
        self.shared_keys = open_shared_keys(config.ledger.url)
        self._shared: list[StoredKey] = []
        self.keys_version = 0  # bumped by admin key changes: a sync read before is stale
        self._key_sync = Periodic(
            self._sync_keys, lambda: SYNC_S, name="fairgate-key-sync", log=log
        )
        self.replicas = ReplicaSet()
        self.replicas.subscribe(RoutingListener(self.dispatcher))
        self.replicas.subscribe(MetricsListener(self.metrics.replica_healthy))
        self.started_at = time.time()
        self._health_task: asyncio.Task[None] | None = None
        self.health_interval = 2.0
        # vllm-provider models: built, started and scaled in the background by the fleet.
        self.fleet: Fleet | None = None
        self.config_path: Path | None = None  # what a reload re-reads (else $FAIRGATE_CONFIG)
        self._sighup = False
        self._reloads: set[asyncio.Task[None]] = set()
        self.metrics.restrict(tenants=self.tenants, models={m.name for m in config.models})
        self.engine_watch = EngineWatch(self.replicas.all, self.dispatcher.engine_load)
        self.telemetry = Telemetry(
            self.metrics,
            self.registry,
            stats=self.scheduler.stats,
            replicas=self.replicas.all,
            engines=self.engine_watch.readings,
        )

    # lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if any(m.provider == "vllm" for m in self.config.models):
            from fairgate.gateway.fleet import Fleet

            self.fleet = Fleet(self.config, self.replicas, self._build_model)
        for model_config in self.config.models:
            if model_config.provider == "vllm":
                continue
            model = self._build_model(model_config)
            self.add_model(model)
            await self._discover(model)
        await self.check_health()
        self._health_task = asyncio.create_task(self._health_loop(), name="fairgate-health")
        self.telemetry.start()
        self.engine_watch.start()
        if self.shared_keys is not None:
            self._key_sync.start()
        if self.fleet is not None:
            self.fleet.start()
        self._watch_sighup()

    async def stop(self) -> None:
        if self._sighup:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.telemetry.stop()
        await self.engine_watch.stop()
        await self._key_sync.stop()
        if self.shared_keys is not None:
            self.shared_keys.close()
        if self.fleet is not None:
            await self.fleet.stop()
        for model in self.models.values():
            for replica in model.replicas.values():
                await replica.aclose()
        self.controls.close()
        self.recorder.close()

    def _build_model(self, config: ModelConfig) -> ModelRuntime:
        tokenizer = load_tokenizer(config.tokenizer)
        markers = Markers(
            config.reasoning_start,
            config.reasoning_end,
            tokenizer.token_id(config.reasoning_start),
            tokenizer.token_id(config.reasoning_end),
        )
        model = ModelRuntime(
            config,
            tokenizer,
            markers,
            upstream_model=_upstream_model(config),
            max_model_len=config.max_model_len,
        )
        manager = self.fleet.manager if self.fleet is not None else None
        for replica in build_replicas(config, manager):
            model.replicas[replica.replica_id] = replica
        return model

    # models and replicas -------------------------------------------------------------
    @property
    def models(self) -> dict[str, ModelRuntime]:
        return self.replicas.models

    @property
    def draining(self) -> set[str]:
        return self.replicas.draining

    def add_model(self, model: ModelRuntime) -> None:
        self.replicas.add_model(model)

    def add_replica(self, model: ModelRuntime, replica: Replica) -> None:
        self.replicas.add(model, replica)

    def retire_replica(self, model: ModelRuntime, replica_id: str) -> None:
        self.replicas.retire(model, replica_id)

    def forget_replica(self, model: ModelRuntime, replica_id: str) -> None:
        self.replicas.forget(model, replica_id)

    # reload --------------------------------------------------------------------------
    def _watch_sighup(self) -> None:
        """SIGHUP reloads the configuration (only where signals can be handled: the main
        thread of ``fairgate serve``)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (ValueError, RuntimeError, NotImplementedError):
            return
        self._sighup = True

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading the configuration")
        task = asyncio.create_task(self._reload_logged(), name="fairgate-reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_logged(self) -> None:
        try:
            log.info("reload: %s", await self.reload())
        except Exception:
            log.exception("reload failed")

    async def reload(self) -> dict[str, Any]:
        """Re-read the configuration; apply replica counts, report what needs a restart."""
        from fairgate.gateway.config import load_config
        from fairgate.gateway.reload import plan_reload

        new = with_default_model(await asyncio.to_thread(load_config, self.config_path))
        plan = plan_reload(self.config, new)
        applied = []
        for change in plan.scale:
            if self.fleet is None or change.model not in self.models:
                continue
            applied.append(await self.fleet.scale(change.model, change.replicas))
        counts = {c.model: c.replicas for c in plan.scale}
        models = [
            m.model_copy(update={"replicas": counts[m.name]}) if m.name in counts else m
            for m in self.config.models
        ]
        self._file_tenants = new.tenants
        tenants = self.tenant_settings.apply(new.tenants)
        live = {"models": models, "tenants": tenants, "guards": new.guards}
        self.config = self.config.model_copy(update=live)
        self._apply_tenants()
        for item in plan.needs_restart:
            log.warning("reload: %s changed; restart the gateway to apply it", item)
        return {"scaled": applied, "needs_restart": list(plan.needs_restart)}

    def apply_tenant_settings(self) -> None:
        """The admin API's tenant settings changed: they take effect for the next request."""
        tenants = self.tenant_settings.apply(self._file_tenants)
        self.config = self.config.model_copy(update={"tenants": tenants})
        self._apply_tenants()

    def _apply_tenants(self) -> None:
        """A reload's tenants, keys, weights, limits and guards take effect at once."""
        self.keyring, tenants = load_tenants(self.config, self._shared)
        self.tenants.clear()  # in place: the metrics follow this dict
        self.tenants.update(tenants)
        for tenant in tenants.values():
            self.scheduler.set_tenant(tenant.name, tenant.weight)
        self.controls.update(self.config)

    async def _sync_keys(self) -> None:
        assert self.shared_keys is not None
        version = self.keys_version
        keys = await asyncio.to_thread(self.shared_keys.active)
        if version == self.keys_version and keys != self._shared:
            self.set_shared_keys(keys)

    def shared_key_list(self) -> list[StoredKey]:
        return list(self._shared)

    def set_shared_keys(self, keys: list[StoredKey]) -> None:
        """The shared store's live keys (gateways on one PostgreSQL) become the keyring's."""
        self.keys_version += 1
        self._shared = keys
        self._apply_tenants()

    async def _discover(self, model: ModelRuntime) -> None:
        """Ask an OpenAI-compatible upstream for its model id and context length."""
        if model.config.provider != "openai" or (
            model.config.upstream_model and model.max_model_len
        ):
            return
        for replica in model.replicas.values():
            try:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    response = await client.get(f"{replica.url}/v1/models")
                entries = response.json().get("data") or []
            except (httpx.HTTPError, ValueError):
                continue
            if entries:
                if not model.config.upstream_model:
                    model.upstream_model = str(entries[0].get("id"))
                if model.max_model_len is None and entries[0].get("max_model_len"):
                    model.max_model_len = int(entries[0]["max_model_len"])
                return

    # health --------------------------------------------------------------------------
    async def _health_loop(self) -> None:
        while True:
            asleep = time.monotonic()
            await asyncio.sleep(self.health_interval)
            self._observe_lag(time.monotonic() - asleep - self.health_interval)
            try:
                await self.check_health()
            except Exception:
                log.exception("health check failed")

    def _observe_lag(self, lag: float) -> None:
        self.metrics.loop_lag.set(lag)
        if lag > LOOP_LAG_WARNING_S:  # say so: connects and probes time out next
            log.warning("the event loop woke %.1f s late: it is blocked or starved of CPU", lag)

    async def check_health(self) -> None:
        # All at once: one replica that is slow to answer must not delay the others. Models
        # and replicas may come and go while the checks run (start-up, scaling).
        checks = self.replicas.checkable()
        results = await asyncio.gather(
            *(replica.check_health() for _, _, replica in checks), return_exceptions=True
        )
        for (model, replica_id, replica), healthy in zip(checks, results, strict=True):
            if isinstance(healthy, BaseException):
                log.warning("health check of %s failed: %r", replica_id, healthy)
            if model.replicas.get(replica_id) is replica:
                self.replicas.set_health(model, replica_id, healthy is True)

    async def replica_failed(self, model_name: str, replica_id: str, reason: str) -> None:
        log.warning("replica %s failed: %s", replica_id, reason)
        self.replicas.set_health(self.models[model_name], replica_id, False)

    def ready(self) -> bool:
        pending = self.fleet is not None and bool(self.fleet.pending)
        return not pending and bool(self.models) and all(m.ready() for m in self.models.values())

    def disagreement(
        self, request_id: str, model: str, name: str, *, ours: int, engine: int
    ) -> None:
        self.metrics.disagreements.labels(model, name).inc()
        log.warning(
            "request %s: %s counted %d at the gateway, %d by the engine",
            request_id,
            name,
            ours,
            engine,
        )


def _upstream_model(config: ModelConfig) -> str:
    if config.provider == "vllm":  # fairgate starts the engine and names the model for it
        return config.upstream_model or config.name
    return config.upstream_model or config.model or config.name


def build_replicas(config: ModelConfig, manager: ReplicaManager | None = None) -> list[Replica]:
    if config.provider == "sim":
        settings = SimSettings(**config.sim.model_dump())
        return [
            SimReplica(f"{config.name}-sim-{i}", config.name, settings)
            for i in range(max(config.replicas, 1))
        ]
    if config.provider == "openai":
        return [
            OpenAIReplica(f"{config.name}-{i}", config.name, url, api_key=config.api_key)
            for i, url in enumerate(config.endpoints)
        ]
    if manager is None:
        raise ConfigError(f"models.{config.name}: provider 'vllm' needs the replica manager")
    from fairgate.gateway.fleet import vllm_replicas

    return list(vllm_replicas(config, manager))


class RoutingListener:
    """The dispatcher routes to the replicas the replica set holds and finds healthy."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def replica_added(self, model: str, replica_id: str) -> None:
        self.dispatcher.add_replica(replica_id, model)

    def replica_removed(self, model: str, replica_id: str) -> None:
        self.dispatcher.remove_replica(replica_id)

    def replica_health(self, model: str, replica_id: str, healthy: bool) -> None:
        self.dispatcher.replica_health(replica_id, healthy)
