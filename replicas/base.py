"""The one seam every provider implements: a replica that streams one request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from replicas.stream import EngineEvent, EngineRequest


class Health(Enum):
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    STOPPED = "stopped"


@dataclass(slots=True, frozen=True)
class EngineLoad:
    """The engine's own view of its queue, from its metrics endpoint."""

    running: int
    waiting: int


class Replica(Protocol):
    replica_id: str
    model: str
    url: str | None

    def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        """Events of one generation; closing the iterator cancels it upstream."""
        ...

    async def check_health(self) -> bool: ...

    async def load(self) -> EngineLoad | None: ...

    async def aclose(self) -> None: ...
