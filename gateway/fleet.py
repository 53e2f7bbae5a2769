"""The ``vllm`` models of a running gateway: start-up in the background, scaling, shutdown.

Start-up never holds up the HTTP server: ``/readyz`` answers 503 until every model has a
healthy replica. In the background, and logged step by step: the embedded model is converted
(first start only) while Ray starts, then every replica's actor starts its engine and warms it
up. The gateway's health loop then notices each replica come up (and go down, and come back).

Scaling follows the configuration (``POST /admin/reload``, SIGHUP). A new replica joins the
scheduler at once but takes work only once healthy. A removed replica leaves the scheduler at
once (its queued requests move to the others), finishes the requests it is streaming, and only
then is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fairgate.gateway.config import Config, ModelConfig
from fairgate.gateway.reload import scale_plan
from fairgate.gateway.replica_set import ModelRuntime, ReplicaSet
from fairgate.replicas.manager import ReplicaManager
from fairgate.replicas.ray_vllm import RayVllmReplica, replica_id
from fairgate.replicas.vllm_process import VllmSpec

log = logging.getLogger("fairgate.fleet")

DRAIN_TIMEOUT_S = 600.0
# A request admitted just before its replica was removed starts streaming within a few loop
# turns; wait this long before trusting an idle count of zero.
DRAIN_GRACE_S = 0.5


def vllm_spec(config: ModelConfig) -> VllmSpec:
    if config.model is None:
        raise ValueError(f"models.{config.name}.model is not resolved")
    return VllmSpec(
        model=config.model,
        served_model_name=config.upstream_model or config.name,
        reasoning_parser=config.reasoning_parser,
        max_model_len=config.max_model_len,
        engine_args=dict(config.engine_args),
    )


def vllm_replicas(config: ModelConfig, manager: ReplicaManager) -> list[RayVllmReplica]:
    spec = vllm_spec(config)
    num_cpus, num_gpus = config.resources.num_cpus, config.resources.num_gpus
    return [
        manager.replica(config.name, index, spec, num_cpus, num_gpus)
        for index in range(config.replicas)
    ]


async def resolve_model(config: ModelConfig, data_dir: Path) -> ModelConfig:
    """Without ``model``, the embedded SmolLM2 (converted on first use); a local model folder
    is also the default tokenizer."""
    update: dict[str, Any] = {}
    model = config.model
    if model is None:
        model = await embedded_model(Path(data_dir))
        update["model"] = model
    if config.tokenizer is None and Path(model).is_dir():
        update["tokenizer"] = model
    return config.model_copy(update=update) if update else config


async def embedded_model(data_dir: Path) -> str:
    """The converted SmolLM2 folder, from ``ensure_smollm2`` run in a child process: the
    conversion loads torch and transformers (about 600 MiB) that the gateway need not keep."""
    env = dict(os.environ)
    env.update(TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_OFFLINE="1")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fairgate.replicas.models", str(data_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    tail: list[str] = []
    if child.stderr is None or child.stdout is None:  # pragma: no cover - both are pipes
        raise RuntimeError("no pipes to the conversion process")
    try:
        async for raw in child.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith("@fairgate "):
                log.info("%s", line.removeprefix("@fairgate "))
            elif line:
                tail = [*tail[-19:], line]
        out = (await child.stdout.read()).decode().strip().splitlines()
        code = await child.wait()
    except BaseException:  # the gateway is stopping: so does the conversion
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        raise
    if code != 0 or not out:
        raise RuntimeError("converting the embedded model failed:\n" + "\n".join(tail))
    return out[-1]


ModelBuilder = Callable[[ModelConfig], ModelRuntime]  # tokenizer, markers and replicas of a model


class Fleet:
    def __init__(
        self,
        config: Config,
        replicas: ReplicaSet,
        build_model: Callable[[ModelConfig], ModelRuntime],
    ) -> None:
        self.data_dir = Path(config.data_dir)
        self.replicas = replicas
        self.build_model = build_model
        self.manager = ReplicaManager(
            address=config.ray.address,
            log_dir=Path(config.data_dir) / "logs",
            keep_replicas=config.ray.keep_replicas,
        )
        self.configs = [m for m in config.models if m.provider == "vllm"]
        self.pending: set[str] = {m.name for m in self.configs}
        self.failed: dict[str, str] = {}  # model -> why it could not be prepared
        self.draining: dict[str, RayVllmReplica] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    # -- start-up --------------------------------------------------------------------
    def start(self) -> None:
        self._spawn(self._start(), "fairgate-fleet-start")

    async def _start(self) -> None:
        started = time.monotonic()
        prepared = asyncio.gather(*(self._add_model(c) for c in self.configs))
        try:
            await self._connect()
            models = await prepared
        except BaseException:  # stopped during start-up: stop preparing models too
            prepared.cancel()
            with contextlib.suppress(BaseException):
                await prepared
            raise
        for model in models:
            if model is not None:
                await self._clear_stale(model)
                for replica in list(model.replicas.values()):
                    if isinstance(replica, RayVllmReplica):
                        replica.launch()
                self._spawn(self._discover(model, started), f"fairgate-discover-{model.name}")

    async def _connect(self) -> None:
        """Until it works: a cluster's head may come up after the gateway (Kubernetes)."""
        delays = iter((2.0, 5.0, 10.0))
        while True:
            try:
                await self.manager.connect()
                return
            except Exception as error:
                delay = next(delays, 30.0)
                log.error("cannot start or reach Ray (%s); retrying in %.0f s", error, delay)
                await asyncio.sleep(delay)

    async def _add_model(self, config: ModelConfig) -> ModelRuntime | None:
        try:
            resolved = await resolve_model(config, self.data_dir)
            model = await asyncio.to_thread(self.build_model, resolved)
        except Exception as error:
            log.exception("model %s could not be prepared", config.name)
            self.failed[config.name] = f"could not be prepared: {error}".splitlines()[0][:300]
            return None
        self.replicas.add_model(model)
        self.pending.discard(config.name)
        log.info("model %s: %s, %d replica(s)", model.name, resolved.model, resolved.replicas)
        return model

    async def _clear_stale(self, model: ModelRuntime) -> None:
        """On a shared cluster, actors beyond the configured count are left-overs: stop them."""
        if self.manager.local:
            return
        for name in await self.manager.stale_actors(model.name, model.config.replicas):
            log.info("stopping left-over actor %s", name)
            await self.manager.kill_actor(name)

    async def _discover(self, model: ModelRuntime, started: float) -> None:
        while not model.ready():
            await asyncio.sleep(0.5)
        log.info("model %s is ready after %.1f s", model.name, time.monotonic() - started)
        if model.max_model_len is not None:
            return
        for replica in model.replicas.values():
            status = getattr(replica, "status", None)
            if status is not None and status.max_model_len:
                model.max_model_len = status.max_model_len
                return

    # -- scaling ---------------------------------------------------------------------
    async def scale(self, name: str, desired: int) -> dict[str, Any]:
        async with self._lock:
            model = self.replicas.models.get(name)
            if model is None or model.config.provider != "vllm":
                raise KeyError(name)
            current = [r.index for r in model.replicas.values() if isinstance(r, RayVllmReplica)]
            current = [i for i in current if replica_id(name, i) not in self.draining]
            taken = [r.index for r in self.draining.values() if r.model == name]
            plan = scale_plan(current, desired, taken)
            spec = vllm_spec(model.config)
            resources = model.config.resources
            for index in plan.add:
                replica = self.manager.replica(
                    name, index, spec, resources.num_cpus, resources.num_gpus
                )
                self.replicas.add(model, replica)
                if self.manager.connected:  # else the start-up launches it once connected
                    replica.launch()
            for index in plan.remove:
                rid = replica_id(name, index)
                removed = model.replicas.get(rid)
                if isinstance(removed, RayVllmReplica):
                    self.replicas.retire(model, rid)
                    self.draining[rid] = removed
                    self._spawn(self._drain(model, removed), f"fairgate-drain-{rid}")
            model.config = model.config.model_copy(update={"replicas": desired})
            if plan.add or plan.remove:
                log.info(
                    "model %s: %d -> %d replica(s) (adding %s, removing %s)",
                    name,
                    len(current),
                    desired,
                    list(plan.add),
                    list(plan.remove),
                )
            return {
                "model": name,
                "replicas": desired,
                "added": [replica_id(name, i) for i in plan.add],
                "removed": [replica_id(name, i) for i in plan.remove],
            }

    async def _drain(self, model: ModelRuntime, replica: RayVllmReplica) -> None:
        started = time.monotonic()
        await asyncio.sleep(DRAIN_GRACE_S)
        while replica.active and time.monotonic() - started < DRAIN_TIMEOUT_S:
            await asyncio.sleep(0.2)
        if replica.active:
            log.warning(
                "replica %s: %d request(s) still running after %.0f s; stopping it",
                replica.replica_id,
                replica.active,
                DRAIN_TIMEOUT_S,
            )
        else:
            log.info(
                "replica %s drained after %.1f s; stopping it",
                replica.replica_id,
                time.monotonic() - started,
            )
        try:
            await self.manager.stop_replica(replica)
            await replica.aclose()
        finally:
            self.replicas.forget(model, replica.replica_id)
            self.draining.pop(replica.replica_id, None)

    # -- shutdown --------------------------------------------------------------------
    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.manager.close()

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
