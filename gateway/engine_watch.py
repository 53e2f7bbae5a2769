"""The engines' own load, read in the background and fed to admission control.

Every ``interval`` seconds, each replica with a ``url`` (the ``openai`` and ``vllm``
providers) has its engine's ``/metrics`` read; a replica without one (``sim``) is asked for
its ``load()`` every ``local_interval`` seconds (an in-process read costs nothing, and a full
engine seen late holds requests in its own FIFO, out of the scheduler's reach). The running
and waiting counts go straight to ``on_load`` (the dispatcher's adaptive in-flight limit); the
last reading of each engine stays in ``readings`` for telemetry to export.

When ``on_load`` answers True (admission sent the engine one job more than it was seen to run,
to probe for a free slot), that engine is read again after ``local_interval``, not
``interval``: a probe into a full engine leaves a job in its FIFO until the next reading, and
with a reading every 5 s that was half the time (bench.peers' flood: the light tenant sharing
an engine with the flood got 0.69 of an equal share, 0.78-0.84 with no probing at all).

It reads in the background, never during a scrape: vLLM's ``/metrics`` can answer seconds late
under load (tests/support/VLLM_NOTES.md), and neither a scrape nor admission may wait on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from fairgate.gateway.periodic import Periodic
from fairgate.replicas.engine_metrics import EngineMetrics, scrape_engine_metrics

log = logging.getLogger("fairgate.engines")
ENGINE_INTERVAL_S = 5.0
LOCAL_INTERVAL_S = 0.25

# (model, replica id, replica) of every replica held
Targets = Callable[[], Iterable[tuple[str, str, Any]]]
# replica id, running, waiting -> read this engine again soon
LoadSink = Callable[[str, int, int], bool | None]


@dataclass(slots=True)
class EngineReading:
    model: str
    metrics: EngineMetrics | None  # None: the last read failed


class EngineWatch:
    def __init__(
        self,
        targets: Targets,
        on_load: LoadSink,
        *,
        interval: float = ENGINE_INTERVAL_S,
        local_interval: float = LOCAL_INTERVAL_S,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.targets = targets
        self.on_load = on_load
        self.interval = interval
        self.local_interval = local_interval
        self._remote_due = 0.0
        self._soon: set[str] = set()  # remote engines whose probe awaits a reading
        self.readings: dict[str, EngineReading] = {}
        self._client = client
        self._loop = Periodic(
            self._tick,
            self._next_interval,
            name="fairgate-engine-watch",
            log=log,
        )

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _next_interval(self) -> float:
        """Quick ticks while some replica is read in-process, or none is known yet: with
        every engine behind a URL, four wake-ups a second cost CPU and read nothing."""
        replicas = [replica for _, _, replica in self.targets()]
        local = not replicas or any(not getattr(r, "url", None) for r in replicas)
        quick = local or bool(self._soon)
        return min(self.interval, self.local_interval) if quick else self.interval

    async def _tick(self) -> None:
        now = time.monotonic()
        remote = now >= self._remote_due
        if remote:
            self._remote_due = now + self.interval
        await self.refresh(remote=remote)

    async def refresh(self, *, remote: bool = True) -> None:
        """Read every engine; with ``remote`` False, only those without a metrics URL and
        those a probe waits on."""
        everything = list(self.targets())
        soon, self._soon = self._soon, set()
        targets = [
            t for t in everything if remote or not getattr(t[2], "url", None) or t[1] in soon
        ]
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        await asyncio.gather(*(self._read(model, rid, replica) for model, rid, replica in targets))
        live = {replica_id for _, replica_id, _ in everything}
        for replica_id in [r for r in self.readings if r not in live]:
            del self.readings[replica_id]

    async def _read(self, model: str, replica_id: str, replica: Any) -> None:
        url = getattr(replica, "url", None)
        if url and self._client is not None:
            reading = await scrape_engine_metrics(self._client, url)
            self.readings[replica_id] = EngineReading(model, reading)
            running = reading.get("fairgate_engine_requests_running") if reading else None
            waiting = reading.get("fairgate_engine_requests_waiting") if reading else None
            if running is None or waiting is None:
                return
            if self.on_load(replica_id, int(running), int(waiting)):
                self._soon.add(replica_id)
            return
        load = getattr(replica, "load", None)
        reported = await load() if callable(load) else None
        if reported is not None:
            self.on_load(replica_id, reported.running, reported.waiting)
