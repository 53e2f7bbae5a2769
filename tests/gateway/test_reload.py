"""Reload planning: which replica indices to add or remove, which changes need a restart."""

from __future__ import annotations

from typing import Any

import pytest

from fairgate.gateway.config import parse_config
from fairgate.gateway.reload import ScalePlan, plan_reload, scale_plan


def test_scaling_down_stops_the_highest_indices() -> None:
    assert scale_plan([0, 1, 2], 1) == ScalePlan(add=(), remove=(1, 2))
    assert scale_plan([2, 0], 0) == ScalePlan(add=(), remove=(0, 2))


def test_scaling_up_fills_the_lowest_free_indices() -> None:
    assert scale_plan([], 2) == ScalePlan(add=(0, 1), remove=())
    assert scale_plan([0, 2], 4) == ScalePlan(add=(1, 3), remove=())


def test_an_index_still_draining_is_not_reused() -> None:
    assert scale_plan([0], 2, taken=[1]) == ScalePlan(add=(2,), remove=())


def test_no_change_is_an_empty_plan() -> None:
    assert scale_plan([0, 1], 2) == ScalePlan(add=(), remove=())


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="desired replica count"):
        scale_plan([0], -1)


def _config(**model: Any) -> Any:
    base = {"name": "m", "provider": "vllm", "model": "/m", "replicas": 2}
    return parse_config({"models": [{**base, **model}]})


def test_replica_counts_of_vllm_models_apply_live() -> None:
    plan = plan_reload(_config(), _config(replicas=3))
    assert [(s.model, s.replicas) for s in plan.scale] == [("m", 3)]
    assert plan.needs_restart == ()


def test_everything_else_needs_a_restart() -> None:
    old = _config()
    new = parse_config(
        {
            "admin_key": "new",
            "models": [
                {"name": "m", "provider": "vllm", "model": "/m", "replicas": 1,
                 "engine_args": {"max_num_seqs": 4}},
                {"name": "n", "provider": "sim"},
            ],
        }
    )  # fmt: skip
    plan = plan_reload(old, new)
    assert [(s.model, s.replicas) for s in plan.scale] == [("m", 1)]
    assert plan.needs_restart == ("models.n (added)", "models.m.engine_args", "admin_key")
    assert plan.as_dict()["scale"] == [{"model": "m", "replicas": 1}]


def test_other_providers_do_not_scale_live() -> None:
    old = parse_config({"models": [{"name": "s", "provider": "sim", "replicas": 1}]})
    new = parse_config({"models": [{"name": "s", "provider": "sim", "replicas": 2}]})
    plan = plan_reload(old, new)
    assert plan.scale == () and plan.needs_restart == ("models.s.replicas",)
    removed = plan_reload(old, parse_config({"models": []}))
    assert removed.needs_restart == ("models.s (removed)",)
