"""The one seam every provider implements: a replica that streams one request."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from fairgate.replicas.stream import EngineEvent, EngineRequest


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
    @property
    def replica_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def url(self) -> str | None: ...

    def stream(self, request: EngineRequest) -> AsyncGenerator[EngineEvent, None]:
        """Events of one generation; closing the iterator cancels it upstream."""
        ...

    async def check_health(self) -> bool: ...

    async def load(self) -> EngineLoad | None: ...

    async def aclose(self) -> None: ...
