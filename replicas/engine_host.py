"""The supervisor of one vLLM server: start it, warm it up, watch it, restart it when it dies.

It is a plain asyncio class; ``replicas.ray_vllm`` wraps it in a Ray actor, so the supervisor
runs next to its engine on whichever node Ray placed it. Its states::

    IDLE ──start()──▶ STARTING ──healthy + warm-up──▶ RUNNING
                        │  ▲                             │ engine exited / stopped answering
                        │  └──────── RESTARTING ◀────────┘ (after a back-off)
                        └─ failed start ──▶ RESTARTING (back-off doubling up to 5 min)
                                                           any ──stop()──▶ STOPPED

An engine that cannot start is retried for as long as it is wanted: a cause outside it (a
full disk, memory taken by another process, a CPU quirk) can go away. ``status()`` names the
last error and when the next try is due, so an operator sees why it is not ready.

A restarted engine listens on a new port; ``status().url`` always names the live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import httpx

from fairgate.replicas.vllm_process import (
    VllmProcess,
    VllmSpec,
    dtype_note,
    free_port,
    is_cpu_build,
    log_tail,
    pinned_cores,
    signal_group,
    vllm_command,
    vllm_env,
    wait_group_gone,
)

log = logging.getLogger("fairgate.engine")

START_TIMEOUT_S = 900.0
WARMUP_TIMEOUT_S = 300.0
# The engine is declared dead, while its process is still there (a dead EngineCore, a hung
# API server), after this many /health probes in a row, one a second, that fail, or that time
# out (5 s each: a saturated engine answers late but is alive, so give it minutes).
UNHEALTHY_PROBES = 10
SLOW_PROBES = 24
BACKOFF_FIRST_S = 1.0
BACKOFF_CAP_S = 300.0


def backoff_s(failed_starts: int) -> float:
    """The wait before the next try: 1, 2, 4, ... seconds, capped at five minutes.

    >>> [backoff_s(n) for n in (0, 1, 2, 3, 12)]
    [1.0, 1.0, 2.0, 4.0, 300.0]
    """
    return float(min(BACKOFF_FIRST_S * 2 ** max(failed_starts - 1, 0), BACKOFF_CAP_S))


class EngineState(Enum):
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(slots=True, frozen=True)
class Placement:
    """Where and how the engine listens. ``local``: one machine, loopback only."""

    index: int
    cores_per_replica: int = 1
    local: bool = True
    log_dir: str | None = None
    node_ip: str = "127.0.0.1"


@dataclass(slots=True, frozen=True)
class EngineStatus:
    state: EngineState
    url: str | None
    pid: int | None
    restarts: int
    starts: int
    startup_s: float | None
    warmup_s: float | None
    running_since: float | None  # wall clock
    error: str | None
    failed_starts: int  # in a row, since the engine last ran
    next_retry_at: float | None  # wall clock; None unless waiting to try again
    log_path: str | None
    node_ip: str
    cores: str | None
    spec_key: str
    max_model_len: int | None

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


def spec_key(spec: VllmSpec, placement: Placement) -> str:
    """A fingerprint of what decides the engine's behaviour: a live actor whose key differs
    from the configured one is replaced rather than adopted."""
    data = {
        "model": spec.model,
        "served_model_name": spec.served_model_name,
        "reasoning_parser": spec.reasoning_parser,
        "max_model_len": spec.max_model_len,
        "engine_args": dict(spec.engine_args),
        "cores_per_replica": placement.cores_per_replica,
    }
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class StartFailed(Exception):
    pass


class EngineHost:
    def __init__(
        self,
        spec: VllmSpec,
        placement: Placement,
        *,
        cpu_build: bool | None = None,
        available_cores: Sequence[int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        command: Callable[..., list[str]] = vllm_command,
        api_key: str | None = None,
    ) -> None:
        self.spec = spec
        self.api_key = api_key  # the engine requires it on /v1 (vLLM reads VLLM_API_KEY)
        self.placement = placement
        self.cpu_build = is_cpu_build() if cpu_build is None else cpu_build
        cores = sorted(available_cores or os.sched_getaffinity(0))
        self.cores = (
            pinned_cores(placement.index, placement.cores_per_replica, cores)
            if self.cpu_build
            else None
        )
        self.key = spec_key(spec, placement)
        self.state = EngineState.IDLE
        self.process: VllmProcess | None = None
        self.url: str | None = None
        self.restarts = 0
        self.starts = 0
        self.startup_s: float | None = None
        self.warmup_s: float | None = None
        self.running_since: float | None = None
        self.max_model_len: int | None = None
        self.error: str | None = None
        self.failed_starts = 0
        self.next_retry_at: float | None = None
        self._clock = clock
        self._command = command  # a stand-in server in tests
        self._task: asyncio.Task[None] | None = None
        log_dir = Path(placement.log_dir or Path(tempfile.gettempdir()) / "fairgate-logs")
        self.log_path = log_dir / f"{spec.served_model_name}-{placement.index}.log"

    # -- commands ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start supervising (idempotent). Must run on the loop thread that lives as long as
        the engine: the engine's death signal is tied to the thread that forked it."""
        if self._task is None or self._task.done():
            self.state = EngineState.STARTING
            self.error = None
            self._task = asyncio.create_task(self._supervise(), name="fairgate-engine")

    async def stop(self) -> None:
        """Stop the engine and the supervisor; nothing of the engine is left running."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stop_process()
        self.state = EngineState.STOPPED
        self.url = None

    def status(self) -> EngineStatus:
        process = self.process
        return EngineStatus(
            state=self.state,
            url=self.url,
            pid=process.pid if process is not None and process.returncode() is None else None,
            restarts=self.restarts,
            starts=self.starts,
            startup_s=self.startup_s,
            warmup_s=self.warmup_s,
            running_since=self.running_since,
            error=self.error,
            failed_starts=self.failed_starts,
            next_retry_at=self.next_retry_at,
            log_path=str(self.log_path),
            node_ip=self.placement.node_ip,
            cores=self.cores,
            spec_key=self.key,
            max_model_len=self.max_model_len,
        )

    # -- supervision -------------------------------------------------------------------
    async def _supervise(self) -> None:
        while True:
            try:
                await self._launch()
                self.failed_starts = 0
                reason = await self._watch()
            except StartFailed as failure:
                self.failed_starts += 1
                reason = str(failure)
            await self._stop_process()
            self.url = None
            self.running_since = None
            self.error = reason
            self.state = EngineState.RESTARTING
            self.restarts += 1
            delay = backoff_s(self.failed_starts)
            self.next_retry_at = time.time() + delay
            level = logging.ERROR if self.failed_starts > 1 else logging.WARNING
            log.log(
                level,
                "engine %s: %s; try %d in %.0f s (log: %s)",
                self.log_path.stem,
                reason,
                self.failed_starts + 1,
                delay,
                self.log_path,
            )
            await asyncio.sleep(delay)
            self.next_retry_at = None
            self.state = EngineState.STARTING

    async def _launch(self) -> None:
        host = "127.0.0.1" if self.placement.local else "0.0.0.0"
        port = free_port(host)
        command = self._command(self.spec, port=port, host=host, cpu_build=self.cpu_build)
        env = vllm_env(
            host_ip=self.placement.node_ip,
            cpu_cores=self.cores,
            offline=Path(self.spec.model).exists(),
        )
        env.pop("VLLM_API_KEY", None)  # only this engine's own key, never an inherited one
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key
        note = dtype_note(self.spec, cpu_build=self.cpu_build)
        if note is not None and self.starts == 0:
            log.info("engine %s: %s", self.log_path.stem, note)
        started = self._clock()
        self.starts += 1
        # Popen here, on the loop thread: see start().
        self.process = VllmProcess(
            command, env=env, port=port, log_path=self.log_path, host=self.placement.node_ip
        )
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(timeout=5.0, headers=headers) as client:
            await self._wait_healthy(client, started)
            self.startup_s = self._clock() - started
            warm = self._clock()
            await self._warm_up(client)
            self.warmup_s = self._clock() - warm
            self.max_model_len = await self._max_model_len(client)
        self.url = self.process.base_url
        self.running_since = time.time()
        self.error = None
        self.state = EngineState.RUNNING

    async def _wait_healthy(self, client: httpx.AsyncClient, started: float) -> None:
        process = self._process()
        while True:
            code = process.returncode()
            if code is not None:
                raise StartFailed(f"vLLM exited with code {code} while starting:\n{self._tail()}")
            if await _healthy(client, process.base_url):
                return
            if self._clock() - started > START_TIMEOUT_S:
                raise StartFailed(
                    f"vLLM not healthy after {START_TIMEOUT_S:.0f} s:\n{self._tail()}"
                )
            await asyncio.sleep(0.5)

    async def _warm_up(self, client: httpx.AsyncClient) -> None:
        """The first request pays for lazy initialisation; pay it before taking traffic."""
        body = {"model": self.spec.served_model_name, "prompt": "Hello", "max_tokens": 1}
        try:
            response = await client.post(
                self._process().base_url + "/v1/completions", json=body, timeout=WARMUP_TIMEOUT_S
            )
        except httpx.HTTPError as error:
            raise StartFailed(f"warm-up request failed: {error!r}") from None
        if response.status_code != 200:
            raise StartFailed(
                f"warm-up request answered {response.status_code}: {response.text[:500]}"
            )

    async def _max_model_len(self, client: httpx.AsyncClient) -> int | None:
        try:
            response = await client.get(self._process().base_url + "/v1/models")
            value = (response.json().get("data") or [{}])[0].get("max_model_len")
        except (httpx.HTTPError, ValueError, AttributeError, IndexError):
            return None
        return int(value) if isinstance(value, int) else None

    async def _watch(self) -> str:
        """Wait until the running engine dies; return why."""
        process = self._process()
        misses = slow = 0
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                for _ in range(10):  # the exit code every 0.1 s, /health every second
                    code = process.returncode()
                    if code is not None:
                        return f"vLLM exited with code {code}"
                    await asyncio.sleep(0.1)
                answer = await _probe(client, process.base_url)
                misses = misses + 1 if answer is False else 0
                slow = slow + 1 if answer is None else 0
                if misses >= UNHEALTHY_PROBES or slow >= SLOW_PROBES:
                    return f"vLLM stopped answering /health ({misses + slow} probes in a row)"

    async def _stop_process(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode() is not None:
            # The leader is gone (killed); its EngineCore may be orphaned in the group.
            signal_group(process.pid, signal.SIGKILL)
            await asyncio.to_thread(wait_group_gone, process.pid, 5.0)
        else:
            await asyncio.to_thread(process.stop)
        process.close_log()

    def _process(self) -> VllmProcess:
        if self.process is None:  # pragma: no cover - only called after _launch started one
            raise StartFailed("no engine process")
        return self.process

    def _tail(self) -> str:
        return log_tail(self.log_path, 30)


async def _healthy(client: httpx.AsyncClient, base_url: str) -> bool:
    return await _probe(client, base_url) is True


async def _probe(client: httpx.AsyncClient, base_url: str) -> bool | None:
    """``/health``: True (200), False (another answer, or refused), None (timed out)."""
    try:
        return (await client.get(base_url + "/health")).status_code == 200
    except httpx.TimeoutException:
        return None
    except httpx.HTTPError:
        return False
