"""``bench.fairness.real_engines`` without engines: its workload, its gateway configuration
(valid for ``fairgate serve``) and the simulator's prediction, so the benchmark cannot rot."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.fairness.real_engines import COMBOS, TENANTS, config, predict, summarize, workload
from fairgate.gateway.config import parse_config


def test_the_workload_is_seeded_closed_loop_sessions() -> None:
    requests = workload(1, per_client=5)
    assert requests == workload(1, per_client=5)
    assert len({r.session for r in requests}) == TENANTS * 3
    assert {r.tenant for r in requests} == {f"t{t}" for t in range(TENANTS)}


def test_each_policys_configuration_is_valid(tmp_path: Path) -> None:
    for policy, router in COMBOS:
        parsed = parse_config(
            yaml.safe_load(config(tmp_path, tmp_path / "m", policy, router).read_text())
        )
        assert parsed.scheduler.policy == policy and parsed.scheduler.router == router
        assert parsed.models[0].provider == "vllm" and parsed.models[0].replicas == 2


def test_the_prediction_and_the_summary() -> None:
    predicted = predict(("lpm", "lpm"), 2176, 20.0, 1)
    assert 0 < predicted.hit < 1 and predicted.tokens_per_s > 0
    records = [
        {"status": "ok", "tenant": "t0", "usage": {"prompt_tokens": 100, "completion_tokens": 16,
         "prompt_tokens_details": {"cached_tokens": 40}}},
        {"status": "client_disconnected", "tenant": "t1", "usage": {"prompt_tokens": 100,
         "completion_tokens": 0}},
    ]  # fmt: skip
    measured = summarize("lpm+lpm", [{"status": 200}], records, wall=2.0)
    assert measured.hit == 0.4 and measured.tokens_per_s == 8.0 and measured.requests == 1
