"""One owner of which replicas exist and how they are; listeners hear each change once."""

from __future__ import annotations

from typing import Any

from fairgate.gateway.config import ModelConfig
from fairgate.gateway.replica_set import ModelRuntime, ReplicaSet
from fairgate.metering.reasoning import Markers
from fairgate.metering.tokens import WordTokenizer
from fairgate.replicas.base import Health


class Named:
    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def replica_added(self, model: str, replica_id: str) -> None:
        self.events.append(("added", model, replica_id))

    def replica_removed(self, model: str, replica_id: str) -> None:
        self.events.append(("removed", model, replica_id))

    def replica_health(self, model: str, replica_id: str, healthy: bool) -> None:
        self.events.append(("health", model, replica_id, healthy))


def model_with(*ids: str) -> ModelRuntime:
    config = ModelConfig(name="m", provider="sim")
    model = ModelRuntime(config, WordTokenizer(), Markers("<think>", "</think>", None, None))
    model.replicas = {rid: Named(rid) for rid in ids}  # type: ignore[misc]
    return model


def test_changes_are_announced_once_and_draining_replicas_are_left_alone() -> None:
    replicas, heard = ReplicaSet(), Recorder()
    replicas.subscribe(heard)
    model = model_with("m-0", "m-1")
    replicas.add_model(model)
    assert heard.events == [("added", "m", "m-0"), ("added", "m", "m-1")]
    assert model.health == {"m-0": Health.STARTING, "m-1": Health.STARTING} and not model.ready()

    replicas.set_health(model, "m-0", True)
    replicas.set_health(model, "m-0", True)  # no change: nothing announced
    assert heard.events[-1] == ("health", "m", "m-0", True) and len(heard.events) == 3
    assert model.ready()

    replicas.retire(model, "m-1")
    assert heard.events[-1] == ("removed", "m", "m-1")
    assert [rid for _, rid, _ in replicas.checkable()] == ["m-0"]
    assert [rid for _, rid, _ in replicas.all()] == ["m-0", "m-1"]  # still streaming
    replicas.set_health(model, "m-1", False)  # a late verdict on a draining replica
    assert len(heard.events) == 4 and "m-1" not in model.health

    replicas.forget(model, "m-1")
    assert list(model.replicas) == ["m-0"] and not replicas.draining
