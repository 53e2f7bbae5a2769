"""The ``vllm`` provider: a replica is a named Ray actor that owns one vLLM server.

The actor (``VllmEngineActor``) is a thin shell over ``EngineHost``, which starts the server,
restarts it when it dies and reports its URL. The gateway side (``RayVllmReplica``) asks the
actor for its status on every health check and streams from the reported URL through the
same OpenAI-HTTP path as the ``openai`` provider. When the actor itself is gone for good
(Ray gave up restarting it), the replica creates a new one under the same name.

Actor names are ``fairgate/<model>/<index>`` in namespace ``fairgate``, so a gateway that
connects to a cluster adopts the live actors an earlier gateway left there.

Each actor gets a random API key when it is created; its engine requires it on ``/v1`` and the
gateway asks the actor for it (an adopting gateway too), so nothing else on the cluster network
can use an engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx
import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from fairgate.replicas.base import EngineLoad
from fairgate.replicas.engine_host import EngineHost, EngineState, EngineStatus, Placement, spec_key
from fairgate.replicas.errors import ReplicaUnavailable
from fairgate.replicas.openai_http import OpenAIReplica
from fairgate.replicas.stream import EngineEvent, EngineRequest
from fairgate.replicas.vllm_process import VllmSpec

log = logging.getLogger("fairgate.replicas")

NAMESPACE = "fairgate"
STATUS_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 5.0
SLOW_PROBES = 3  # timed-out probes in a row before a replica counts as unhealthy
STOP_TIMEOUT_S = 60.0
PROGRESS_EVERY_S = 10.0


def actor_name(model: str, index: int) -> str:
    return f"fairgate/{model}/{index}"


def parse_actor_name(name: str) -> tuple[str, int] | None:
    """``(model, index)`` for a fairgate actor name, else None. Model names may hold '/'."""
    prefix, _, rest = name.partition("/")
    model, _, index = rest.rpartition("/")
    if prefix != "fairgate" or not model or not index.isdigit():
        return None
    return model, int(index)


def replica_id(model: str, index: int) -> str:
    return f"{model}-{index}"


@dataclass(slots=True, frozen=True)
class ActorOptions:
    num_cpus: float = 1
    num_gpus: float = 0
    detached: bool = False  # outlives the gateway (on a shared cluster), adoptable by name
    local: bool = True
    log_dir: str | None = None


class VllmEngineActor:
    """Runs inside Ray. ``ray.remote`` is applied by ``RayVllmReplica`` (lazily, so importing
    this module does not need a Ray connection)."""

    def __init__(self, spec: VllmSpec, placement: Placement, api_key: str | None = None) -> None:
        self._api_key = api_key
        if not placement.local:
            placement = Placement(
                placement.index,
                placement.cores_per_replica,
                placement.local,
                placement.log_dir,
                ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            )
        self._host = EngineHost(spec, placement, api_key=api_key)

    async def start(self) -> None:
        await self._host.start()

    async def status(self) -> EngineStatus:
        return self._host.status()

    async def api_key(self) -> str | None:
        return self._api_key

    async def stop(self) -> None:
        await self._host.stop()


_remote_actor: Any = None


def _actor_class() -> Any:
    global _remote_actor
    if _remote_actor is None:
        _remote_actor = ray.remote(VllmEngineActor)
    return _remote_actor


class RayVllmReplica:
    """One replica as the gateway sees it; implements ``replicas.base.Replica``."""

    def __init__(self, model: str, index: int, spec: VllmSpec, options: ActorOptions) -> None:
        self.replica_id = replica_id(model, index)
        self.model = model
        self.index = index
        self.spec = spec
        self.options = options
        self.name = actor_name(model, index)
        self.placement = Placement(
            index=index,
            cores_per_replica=max(1, round(options.num_cpus)),
            local=options.local,
            log_dir=options.log_dir,
        )
        self.url: str | None = None
        self.status: EngineStatus | None = None
        self.active = 0  # streams in progress
        self.adopted = False
        self.pids: set[int] = set()  # engine process groups seen (for a last sweep, locally)
        self._actor: Any = None
        self._http: OpenAIReplica | None = None
        self._retired: list[OpenAIReplica] = []  # pools of earlier engine URLs (aclose)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=600.0, write=30.0, pool=30.0)
        )
        self._launch: asyncio.Task[None] | None = None
        self._launched_at = time.monotonic()
        self._progress_at = 0.0
        self._wanted = False  # launch() was called: keep an actor alive from now on
        self._healthy = False  # the last conclusive health verdict
        self._slow = 0  # inconclusive (timed-out) probes since
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------
    def launch(self) -> None:
        """Create (or adopt) the actor and start its engine, in the background."""
        self._wanted = True
        if self._stopping or (self._launch is not None and not self._launch.done()):
            return
        self._launch = asyncio.create_task(self._create(), name=f"fairgate-launch-{self.name}")

    async def _create(self) -> None:
        self._launched_at = time.monotonic()
        self._progress_at = 0.0
        try:
            actor, adopted = await asyncio.to_thread(self._get_or_create)
            if adopted:
                status = await asyncio.wait_for(actor.status.remote(), STATUS_TIMEOUT_S)
                if status.spec_key != spec_key(self.spec, self.placement):
                    log.info(
                        "replica %s: live actor %s runs another configuration; replacing",
                        self.replica_id,
                        self.name,
                    )
                    await _stop_actor(actor)
                    actor, adopted = await asyncio.to_thread(self._get_or_create)
            self._use_key(await asyncio.wait_for(actor.api_key.remote(), STATUS_TIMEOUT_S))
            self.adopted = adopted
            self._actor = actor
            if adopted:
                log.info("replica %s: adopted live actor %s", self.replica_id, self.name)
            else:
                log.info(
                    "replica %s: starting vLLM engine for %s in actor %s",
                    self.replica_id,
                    self.spec.model,
                    self.name,
                )
            await actor.start.remote()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a Ray failure: the next health check tries again
            log.warning("replica %s: cannot create actor %s: %r", self.replica_id, self.name, error)
            self._actor = None

    def _get_or_create(self) -> tuple[Any, bool]:
        """Blocking Ray calls: run in a thread."""
        if not ray.is_initialized():  # never let Ray's auto-init start a second instance
            raise RuntimeError("not connected to Ray yet")
        with contextlib.suppress(ValueError):
            return ray.get_actor(self.name, namespace=NAMESPACE), True
        actor = (
            _actor_class()
            .options(
                name=self.name,
                namespace=NAMESPACE,
                lifetime="detached" if self.options.detached else None,
                get_if_exists=True,
                num_cpus=self.options.num_cpus,
                num_gpus=self.options.num_gpus,
                max_restarts=-1,  # Ray restarts a dead actor process; it restarts its engine
                max_task_retries=0,
                max_concurrency=64,
            )
            .remote(self.spec, self.placement, secrets.token_urlsafe(32))
        )
        return actor, False

    def _use_key(self, api_key: str | None) -> None:
        if api_key:
            self._client.headers["Authorization"] = f"Bearer {api_key}"
        else:
            self._client.headers.pop("Authorization", None)

    async def stop(self) -> None:
        """Stop the engine and the actor (after draining, when scaling down or exiting)."""
        self._stopping = True
        if self._launch is not None:
            self._launch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._launch
        actor, self._actor = self._actor, None
        self._set_url(None)
        if actor is None:
            with contextlib.suppress(Exception):
                actor = await asyncio.to_thread(ray.get_actor, self.name, NAMESPACE)
        if actor is not None:
            await _stop_actor(actor)

    def detach(self) -> None:
        """Leave the actor running (``ray.keep_replicas``): only forget it here."""
        self._stopping = True
        if self._launch is not None:
            self._launch.cancel()
        self._actor = None

    async def aclose(self) -> None:
        # Every engine URL this replica served from had its own stream pool; close them all
        # at the end (not on a restart: streams to a new engine may be starting meanwhile).
        for http in [*self._retired, self._http]:
            if http is not None:
                await http.close_streams()
        self._retired.clear()
        await self._client.aclose()

    # -- health ------------------------------------------------------------------------
    async def check_health(self) -> bool:
        """Healthy when the actor reports a running engine and the engine answers /health.

        A probe that only times out is inconclusive: a saturated engine (or actor) answers
        late but still serves, so the last verdict stands for up to ``SLOW_PROBES`` such
        probes in a row. A definite answer (engine restarting, connection refused, actor
        gone) counts at once.
        """
        verdict = await self._check()
        if verdict is None:
            self._slow += 1
            return self._healthy and self._slow <= SLOW_PROBES
        self._slow = 0
        self._healthy = verdict
        return verdict

    async def _check(self) -> bool | None:
        actor = self._actor
        if actor is None:
            if self._wanted and not self._stopping and self._launch is not None:
                self.launch()  # the last attempt to create the actor failed: try again
            return False
        try:
            status: EngineStatus = await asyncio.wait_for(actor.status.remote(), STATUS_TIMEOUT_S)
        except TimeoutError:
            return None
        except ActorUnavailableError:
            return False  # being restarted by Ray
        except RayActorError as error:
            if self._actor is actor and not self._stopping:
                log.warning(
                    "replica %s: actor %s is gone (%s); creating it again",
                    self.replica_id,
                    self.name,
                    type(error).__name__,
                )
                self._actor = None
                self._set_url(None)
                self.launch()
            return False
        self._observe(status)
        if status.state is EngineState.IDLE:  # a fresh or Ray-restarted actor
            await actor.start.remote()
            return False
        if status.state is not EngineState.RUNNING or status.url is None:
            return False
        if status.url != self.url:
            self._set_url(status.url)
        try:
            response = await self._client.get(status.url + "/health", timeout=HEALTH_TIMEOUT_S)
        except httpx.TimeoutException:
            return None
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _observe(self, status: EngineStatus) -> None:
        previous, self.status = self.status, status
        if status.pid is not None:
            self.pids.add(status.pid)
        was = previous.state if previous is not None else None
        now = time.monotonic()
        if status.state is EngineState.RUNNING and (
            was is not EngineState.RUNNING or previous is None or previous.url != status.url
        ):
            log.info(
                "replica %s: engine ready at %s after %.1f s (start-up %.1f s, warm-up "
                "%.2f s, restarts %d)",
                self.replica_id,
                status.url,
                now - self._launched_at,
                status.startup_s or 0.0,
                status.warmup_s or 0.0,
                status.restarts,
            )
        elif status.state in (EngineState.STARTING, EngineState.RESTARTING):
            if was is EngineState.RUNNING:
                self._launched_at = now
                self._progress_at = 0.0
                log.warning(
                    "replica %s: engine down (%s); restarting",
                    self.replica_id,
                    status.error or "unknown reason",
                )
            elapsed = now - self._launched_at
            if elapsed - self._progress_at >= PROGRESS_EVERY_S:
                self._progress_at = elapsed
                log.info(
                    "replica %s: engine %s, %.0f s", self.replica_id, status.state.value, elapsed
                )
        elif status.state is EngineState.FAILED and was is not EngineState.FAILED:
            log.error(
                "replica %s: engine failed: %s (log: %s)",
                self.replica_id,
                status.error,
                status.log_path,
            )

    def _set_url(self, url: str | None) -> None:
        if self._http is not None:
            self._retired.append(self._http)
        self.url = url
        self._http = (
            None
            if url is None
            else OpenAIReplica(self.replica_id, self.model, url, client=self._client)
        )

    def _require_http(self) -> OpenAIReplica:
        if self._http is None:
            raise ReplicaUnavailable(
                f"replica {self.replica_id} is not running", replica_id=self.replica_id
            )
        return self._http

    # -- serving -----------------------------------------------------------------------
    async def stream(self, request: EngineRequest) -> AsyncGenerator[EngineEvent, None]:
        http = self._require_http()
        self.active += 1
        try:
            async for event in http.stream(request):
                yield event
        finally:
            self.active -= 1

    async def load(self) -> EngineLoad | None:
        return await self._http.load() if self._http is not None else None

    def info(self) -> dict[str, Any]:
        status = self.status.as_dict() if self.status is not None else {}
        return {
            "replica": self.replica_id,
            "actor": self.name,
            "namespace": NAMESPACE,
            "adopted": self.adopted,
            "active_requests": self.active,
            "engine": status,
        }


async def _stop_actor(actor: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(actor.stop.remote(), STOP_TIMEOUT_S)
    with contextlib.suppress(Exception):
        await asyncio.to_thread(ray.kill, actor, no_restart=True)
