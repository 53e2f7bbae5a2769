"""The engines' own load, read in the background and fed to admission control.

Every ``interval`` seconds, each replica with a ``url`` (the ``openai`` and ``vllm``
providers) has its engine's ``/metrics`` read; a replica without one (``sim``) is asked for
its ``load()``. The running and waiting counts go straight to ``on_load`` (the dispatcher's
adaptive in-flight limit); the last reading of each engine stays in ``readings`` for telemetry
to export.

It reads in the background, never during a scrape: vLLM's ``/metrics`` can answer seconds late
under load (tests/support/VLLM_NOTES.md), and neither a scrape nor admission may wait on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from fairgate.gateway.periodic import Periodic
from fairgate.replicas.engine_metrics import EngineMetrics, scrape_engine_metrics

log = logging.getLogger("fairgate.engines")
ENGINE_INTERVAL_S = 5.0

# (model, replica id, replica) of every replica held
Targets = Callable[[], Iterable[tuple[str, str, Any]]]
LoadSink = Callable[[str, int, int], None]  # replica id, running, waiting


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
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.targets = targets
        self.on_load = on_load
        self.interval = interval
        self.readings: dict[str, EngineReading] = {}
        self._client = client
        self._loop = Periodic(
            self.refresh, lambda: self.interval, name="fairgate-engine-watch", log=log
        )

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def refresh(self) -> None:
        targets = list(self.targets())
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        await asyncio.gather(*(self._read(model, rid, replica) for model, rid, replica in targets))
        live = {replica_id for _, replica_id, _ in targets}
        for replica_id in [r for r in self.readings if r not in live]:
            del self.readings[replica_id]

    async def _read(self, model: str, replica_id: str, replica: Any) -> None:
        url = getattr(replica, "url", None)
        if url and self._client is not None:
            reading = await scrape_engine_metrics(self._client, url)
            self.readings[replica_id] = EngineReading(model, reading)
            running = reading.get("fairgate_engine_requests_running") if reading else None
            waiting = reading.get("fairgate_engine_requests_waiting") if reading else None
            if running is not None and waiting is not None:
                self.on_load(replica_id, int(running), int(waiting))
            return
        load = getattr(replica, "load", None)
        reported = await load() if callable(load) else None
        if reported is not None:
            self.on_load(replica_id, reported.running, reported.waiting)
