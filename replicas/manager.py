"""The Ray side of a gateway's vLLM replicas: the Ray connection and every replica handle made.

``ReplicaManager`` starts local Ray (or connects to a cluster), hands out ``RayVllmReplica``
handles, and at exit stops what it started: every replica's actor and engine, then local Ray.
It knows nothing of models' tenants or of the scheduler; the gateway decides how many
replicas each model has (``gateway.fleet``).

Every blocking Ray call (``ray.init``, ``ray.get_actor``, ``ray.kill``, ``ray.shutdown``)
runs in a worker thread, so the event loop keeps serving while Ray starts or stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

import ray

from fairgate.replicas.ray_vllm import NAMESPACE, ActorOptions, RayVllmReplica, parse_actor_name
from fairgate.replicas.vllm_process import VllmSpec, group_pids, signal_group

log = logging.getLogger("fairgate.replicas")

# Ray's object store holds nothing of ours but small status objects.
LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024


class ReplicaManager:
    def __init__(
        self,
        *,
        address: str | None,
        log_dir: Path | None = None,
        keep_replicas: bool = False,
    ) -> None:
        # Like Ray itself: an explicit address, else $RAY_ADDRESS, else a new local instance.
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.log_dir = log_dir
        self.keep_replicas = keep_replicas and self.address is not None
        self.replicas: dict[str, RayVllmReplica] = {}  # by replica id, while not stopped
        self.initialized_ray = False  # this manager called ray.init (and will ray.shutdown)
        self.connected = False
        self._init: asyncio.Future[None] | None = None  # ray.init, running in a thread

    @property
    def local(self) -> bool:
        return self.address is None

    async def connect(self) -> None:
        if self.connected:
            return
        if self._init is None:
            if self.local:
                log.info("starting local Ray (%d CPUs, no dashboard)", os.cpu_count() or 1)
            else:
                log.info("connecting to the Ray cluster at %s", self.address)
            self._init = asyncio.get_running_loop().run_in_executor(None, self._init_ray)
        started = time.monotonic()
        init = self._init
        try:
            # Shielded: a cancelled start-up lets ray.init finish, so close() can undo it.
            await asyncio.shield(init)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._init = None  # the next connect() tries again
            raise
        self.connected = True
        log.info("Ray is up after %.1f s", time.monotonic() - started)

    def _init_ray(self) -> None:
        if ray.is_initialized():  # e.g. an embedding application connected already
            return
        try:
            self._ray_init()
        except BaseException:
            ray.shutdown()  # leave no half-made connection for the next attempt
            raise
        self.initialized_ray = True

    def _ray_init(self) -> None:
        if self.local:
            # "local": never attach to another Ray instance found running on this machine.
            ray.init(
                address="local",
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                namespace=NAMESPACE,
                log_to_driver=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                logging_level=logging.WARNING,
            )
        else:
            ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False)

    def replica(
        self, model: str, index: int, spec: VllmSpec, num_cpus: float, num_gpus: float
    ) -> RayVllmReplica:
        options = ActorOptions(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            detached=not self.local,
            local=self.local,
            log_dir=str(self.log_dir) if self.local and self.log_dir is not None else None,
        )
        replica = RayVllmReplica(model, index, spec, options)
        self.replicas[replica.replica_id] = replica
        return replica

    async def stop_replica(self, replica: RayVllmReplica) -> None:
        await replica.stop()
        self._sweep(replica)
        self.replicas.pop(replica.replica_id, None)

    async def stale_actors(self, model: str, keep: int) -> list[str]:
        """Names of live actors of ``model`` with an index >= ``keep`` (left by an earlier
        gateway that ran more replicas)."""
        if not self.connected:
            return []
        names = await asyncio.to_thread(ray.util.list_named_actors)
        stale = []
        for name in names:
            parsed = parse_actor_name(name)
            if parsed is not None and parsed[0] == model and parsed[1] >= keep:
                stale.append(name)
        return sorted(stale)

    async def kill_actor(self, name: str) -> None:
        with contextlib.suppress(ValueError):
            actor = await asyncio.to_thread(ray.get_actor, name, NAMESPACE)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(actor.stop.remote(), 60)
            await asyncio.to_thread(ray.kill, actor, no_restart=True)

    async def close(self) -> None:
        """Stop every replica (unless kept on a cluster), then the local Ray we started."""
        if self._init is not None and not self._init.done():
            with contextlib.suppress(Exception):
                await self._init  # a start-up still under way: let it finish, then undo it
        replicas = list(self.replicas.values())
        if self.keep_replicas:
            for replica in replicas:
                replica.detach()
            log.info("leaving %d replica actor(s) running on the cluster", len(replicas))
        elif replicas:
            log.info("stopping %d replica(s)", len(replicas))
            await asyncio.gather(*(replica.stop() for replica in replicas))
        for replica in replicas:
            await replica.aclose()
        if self.initialized_ray:
            # Local: stops Ray. On a cluster: only disconnects (detached actors live on).
            started = time.monotonic()
            await asyncio.to_thread(ray.shutdown)
            self.initialized_ray = False
            what = "local Ray stopped" if self.local else "disconnected from Ray"
            log.info("%s after %.1f s", what, time.monotonic() - started)
        for replica in replicas:
            self._sweep(replica)
        self.replicas.clear()
        self.connected = False

    def _sweep(self, replica: RayVllmReplica) -> None:
        """Last resort, on one machine only: no engine process group may outlive its actor."""
        if not self.local:
            return
        for pgid in replica.pids:
            if group_pids(pgid):
                log.warning(
                    "replica %s: engine group %d outlived its actor; killing it",
                    replica.replica_id,
                    pgid,
                )
                signal_group(pgid, signal.SIGKILL)
