"""Which replicas exist, for which model, and whether each is healthy or draining.

One owner of that state. What follows it subscribes (``ReplicaListener``): the dispatcher
(which replicas the scheduler may route to) and the metrics (``fairgate_replica_healthy``).
The runtime's health loop and the Ray fleet change it; nothing else keeps a copy.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from fairgate.gateway.config import ModelConfig
from fairgate.metering.reasoning import Markers
from fairgate.metering.tokens import Tokenizer
from fairgate.replicas.base import Health, Replica

log = logging.getLogger("fairgate.replicas")
DEFAULT_MAX_TOKENS = 256


@dataclass(slots=True)
class ModelRuntime:
    """One served model: how to tokenize it, where its reasoning is, and its replicas."""

    config: ModelConfig
    tokenizer: Tokenizer
    markers: Markers
    replicas: dict[str, Replica] = field(default_factory=dict)
    health: dict[str, Health] = field(default_factory=dict)
    upstream_model: str = ""
    max_model_len: int | None = None
    default_max_tokens: int = DEFAULT_MAX_TOKENS

    @property
    def name(self) -> str:
        return self.config.name

    def ready(self) -> bool:
        return any(state is Health.HEALTHY for state in self.health.values())


class ReplicaListener(Protocol):
    def replica_added(self, model: str, replica_id: str) -> None: ...
    def replica_removed(self, model: str, replica_id: str) -> None: ...
    def replica_health(self, model: str, replica_id: str, healthy: bool) -> None: ...


class ReplicaSet:
    def __init__(self) -> None:
        self.models: dict[str, ModelRuntime] = {}
        self.draining: set[str] = set()  # removed from routing, finishing their streams
        self._listeners: list[ReplicaListener] = []

    def subscribe(self, listener: ReplicaListener) -> None:
        self._listeners.append(listener)

    def all(self) -> list[tuple[str, str, Replica]]:
        """(model, replica id, replica) of every replica held, draining ones included."""
        return [
            (model.name, replica_id, replica)
            for model in list(self.models.values())
            for replica_id, replica in list(model.replicas.items())
        ]

    def checkable(self) -> list[tuple[ModelRuntime, str, Replica]]:
        """The replicas whose health is followed: every one that is not draining."""
        return [
            (model, replica_id, replica)
            for model in list(self.models.values())
            for replica_id, replica in list(model.replicas.items())
            if replica_id not in self.draining
        ]

    def add_model(self, model: ModelRuntime) -> None:
        self.models[model.name] = model
        for replica in list(model.replicas.values()):
            self.add(model, replica)

    def add(self, model: ModelRuntime, replica: Replica) -> None:
        """A replica joins at once; it takes work once a health check passes."""
        model.replicas[replica.replica_id] = replica
        model.health[replica.replica_id] = Health.STARTING
        for listener in self._listeners:
            listener.replica_added(model.name, replica.replica_id)

    def retire(self, model: ModelRuntime, replica_id: str) -> None:
        """No new work for the replica; the requests it is streaming go on until ``forget``."""
        self.draining.add(replica_id)
        model.health.pop(replica_id, None)
        for listener in self._listeners:
            listener.replica_removed(model.name, replica_id)

    def forget(self, model: ModelRuntime, replica_id: str) -> None:
        model.replicas.pop(replica_id, None)
        self.draining.discard(replica_id)

    def set_health(self, model: ModelRuntime, replica_id: str, healthy: bool) -> None:
        if model.replicas.get(replica_id) is None or replica_id in self.draining:
            return
        state = Health.HEALTHY if healthy else Health.UNHEALTHY
        previous = model.health.get(replica_id)
        model.health[replica_id] = state
        if previous is state:
            return
        log.info("replica %s of model %s is %s", replica_id, model.name, state.value)
        for listener in self._listeners:
            listener.replica_health(model.name, replica_id, healthy)


class MetricsListener:
    """``fairgate_replica_healthy`` follows the replica set."""

    def __init__(self, gauge: object) -> None:
        self.gauge = gauge

    def replica_added(self, model: str, replica_id: str) -> None:
        pass  # the series appears with the first health verdict

    def replica_removed(self, model: str, replica_id: str) -> None:
        with contextlib.suppress(KeyError):
            self.gauge.remove(model, replica_id)  # type: ignore[attr-defined]

    def replica_health(self, model: str, replica_id: str, healthy: bool) -> None:
        self.gauge.labels(model, replica_id).set(1 if healthy else 0)  # type: ignore[attr-defined]
