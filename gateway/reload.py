"""What a configuration reload changes, decided without touching anything.

A reload applies live the replica count of a ``vllm`` model, and the ``tenants`` and ``guards``
sections whole (keys, weights, limits, timeouts). Everything
else that differs is reported as needing a restart, so an operator sees at once which part of
the new file did not take effect. ``scale_plan`` picks replica indices: scaling down stops the
highest indices, scaling up fills the lowest free ones (an index still draining is not free:
its actor name is still taken).

    >>> scale_plan(current=[0, 1, 2], desired=1, taken=[0, 1, 2])
    ScalePlan(add=(), remove=(1, 2))
    >>> scale_plan(current=[0], desired=3, taken=[0, 1])
    ScalePlan(add=(2, 3), remove=())
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fairgate.gateway.config import Config

LIVE_MODEL_FIELDS = frozenset({"replicas"})
LIVE_SECTIONS = frozenset({"tenants", "guards"})  # applied whole: keys, weights, limits


@dataclass(slots=True, frozen=True)
class ScalePlan:
    add: tuple[int, ...]
    remove: tuple[int, ...]


@dataclass(slots=True, frozen=True)
class Scale:
    model: str
    replicas: int


@dataclass(slots=True, frozen=True)
class ReloadPlan:
    scale: tuple[Scale, ...]
    needs_restart: tuple[str, ...]  # config keys whose new value is not applied live

    def as_dict(self) -> dict[str, Any]:
        return {
            "scale": [{"model": s.model, "replicas": s.replicas} for s in self.scale],
            "needs_restart": list(self.needs_restart),
        }


def scale_plan(current: Iterable[int], desired: int, taken: Iterable[int] = ()) -> ScalePlan:
    """Indices to add and remove so that ``desired`` replicas remain."""
    if desired < 0:
        raise ValueError(f"desired replica count must be >= 0, got {desired}")
    live = sorted(set(current))
    if len(live) >= desired:
        return ScalePlan((), tuple(live[desired:]))
    busy = set(live) | set(taken)
    add: list[int] = []
    index = 0
    while len(live) + len(add) < desired:
        if index not in busy:
            add.append(index)
        index += 1
    return ScalePlan(tuple(add), ())


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare the running configuration with a newly read one."""
    scale: list[Scale] = []
    needs_restart: list[str] = []
    old_models = {m.name: m for m in old.models}
    new_models = {m.name: m for m in new.models}
    for name in sorted(old_models.keys() - new_models.keys()):
        needs_restart.append(f"models.{name} (removed)")
    for name in sorted(new_models.keys() - old_models.keys()):
        needs_restart.append(f"models.{name} (added)")
    for name in sorted(old_models.keys() & new_models.keys()):
        before, after = old_models[name], new_models[name]
        changed = _changed_fields(before.model_dump(), after.model_dump())
        live = before.provider == after.provider == "vllm"
        for key in changed:
            if live and key in LIVE_MODEL_FIELDS:
                scale.append(Scale(name, after.replicas))
            else:
                needs_restart.append(f"models.{name}.{key}")
    old_rest = old.model_dump(exclude={"models", *LIVE_SECTIONS})
    new_rest = new.model_dump(exclude={"models", *LIVE_SECTIONS})
    needs_restart += _changed_fields(old_rest, new_rest)
    return ReloadPlan(tuple(scale), tuple(needs_restart))


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
