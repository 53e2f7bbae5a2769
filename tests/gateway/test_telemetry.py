"""What /metrics and the request log show after traffic through a real gateway (sim provider,
plus an ``openai`` model whose only replica is a fake engine serving vLLM's /metrics)."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fairgate.gateway.runtime import Runtime
from fairgate.gateway.serve import _Formatter
from tests.gateway.conftest import client
from tests.support.fake_engine import FakeEngine
from tests.support.gateway_server import GatewayServer, sim_config
from tests.support.prometheus import binary

LONG = " ".join(f"word{i}" for i in range(40))  # > 2 sim cache blocks: repeats hit the cache
SECRETS = ("sk-alice", "sk-bob", "admin-secret", "sk-wrong-key-0123")


def telemetry_config(data_dir: Path, engine_url: str) -> Any:
    base = sim_config(data_dir)
    models = [m.model_dump() for m in base.models]
    models.append({"name": "engine", "provider": "openai", "endpoints": [engine_url]})
    return sim_config(
        data_dir,
        models=models,
        tenants=[
            {"name": "alice", "weight": 1.0, "api_keys": ["sk-alice"]},
            {"name": "bob", "weight": 2.0, "api_keys": ["sk-bob"]},
        ],
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayServer, str]]:
    """A gateway after a little traffic, and its /metrics text."""
    with FakeEngine() as engine:
        server = GatewayServer(telemetry_config(tmp_path_factory.mktemp("gw"), engine.url))
        server.runtime.telemetry.interval = 0.1
        server.runtime.engine_watch.interval = 0.1
        with server:
            alice, bob = client(server), client(server, "sk-bob")
            for _ in range(3):
                alice.chat.completions.create(
                    model="sim-hidden", messages=[{"role": "user", "content": LONG}]
                )
            bob.completions.create(model="sim-visible", prompt=LONG, max_tokens=5)
            with pytest.raises(openai.NotFoundError):
                alice.chat.completions.create(
                    model="gpt-9", messages=[{"role": "user", "content": "x"}]
                )
            with pytest.raises(openai.AuthenticationError):
                client(server, "sk-wrong-key-0123").models.list()
            # Engines are read and fairness is sampled in the background, never by a scrape:
            # wait for a reading and for a sample taken after the last request.
            telemetry, deadline = server.runtime.telemetry, time.monotonic() + 10
            while time.monotonic() < deadline and not (
                telemetry.engines and len(telemetry.fairness.shares()) == 2
            ):
                time.sleep(0.05)
            text = httpx.get(server.base_url + "/metrics").text
            yield server, text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_scheduler_state_is_exported(served) -> None:
    _, text = served
    assert value(text, "fairgate_tenant_queued_jobs", tenant="alice") == 0
    assert value(text, "fairgate_tenant_inflight_jobs", tenant="bob") == 0
    assert value(text, "fairgate_tenant_weight", tenant="bob") == 2
    assert value(text, "fairgate_tenant_served_weighted_tokens_total", tenant="alice") > 0
    assert value(text, "fairgate_tenant_deficit_weighted_tokens", tenant="alice") is not None
    assert value(text, "fairgate_tenant_vtc_weighted_tokens", tenant="alice") is not None
    assert value(text, "fairgate_scheduler_decisions_total", kind="route") == 4
    assert value(text, "fairgate_scheduler_decisions_total", kind="admit") == 4
    assert 0.5 <= value(text, "fairgate_fairness_jain_index") <= 1
    assert value(text, "fairgate_fairness_window_seconds") == 60
    assert value(text, "fairgate_fairness_active_tenants") == 2
    routed = [
        (labels, v)
        for (name, labels), v in samples(text).items()
        if name == "fairgate_replica_inflight_limit"
    ]
    assert len(routed) == 5  # 2 + 1 + 1 sim replicas and the engine


def test_prefix_hits_predicted_and_reported(served) -> None:
    _, text = served
    hits = {
        dict(labels)["replica"]: v
        for (name, labels), v in samples(text).items()
        if name == "fairgate_prefix_cached_tokens_total"
    }
    assert sum(hits.values()) > 0  # the sim reported cached tokens on a repeated prompt
    ratios = [
        v for (name, _), v in samples(text).items() if name == "fairgate_prefix_predicted_hit_ratio"
    ]
    assert ratios and all(0 <= r <= 1 for r in ratios)
    assert any(name == "fairgate_prefix_hit_ratio" for name, _ in samples(text))


def test_engine_metrics_are_re_exported_with_a_replica_label(served) -> None:
    _, text = served
    labels = {"model": "engine", "replica": "engine-0"}
    assert value(text, "fairgate_engine_up", **labels) == 1
    assert value(text, "fairgate_engine_requests_running", **labels) == 3
    assert value(text, "fairgate_engine_requests_waiting", **labels) == 2
    assert value(text, "fairgate_engine_kv_cache_usage_ratio", **labels) == 0.25
    assert value(text, "fairgate_engine_prefix_cache_hit_tokens_total", **labels) == 2688
    assert value(text, "fairgate_replica_healthy", **labels) == 1
    assert value(text, "fairgate_replica_restarts_total", **labels) == 0
    assert not any(name.startswith("vllm:") for name, _ in samples(text))  # only in HELP
    sim = {"model": "sim-hidden", "replica": "sim-hidden-sim-0"}
    assert value(text, "fairgate_engine_up", **sim) is None  # sim replicas have no URL


def test_labels_are_bounded_and_keys_never_exposed(served) -> None:
    _, text = served
    assert (
        value(
            text, "fairgate_requests_total", tenant="alice", model="other", status="model_not_found"
        )
        == 1
    )
    assert value(text, "fairgate_auth_failures_total") == 1
    assert "gpt-9" not in text
    for secret in SECRETS:
        assert secret not in text
    tenants = {dict(labels).get("tenant") for labels in (k[1] for k in samples(text))} - {None}
    assert tenants <= {"alice", "bob", "other"}


def test_reasoning_tokens_match_what_clients_saw(served) -> None:
    server, text = served
    records = [r for r in server.records() if r["tenant"] == "alice" and r["status"] == "ok"]
    expected = sum(r["usage"]["completion_tokens_details"]["reasoning_tokens"] for r in records)
    got = value(text, "fairgate_tokens_total", tenant="alice", model="sim-hidden", kind="reasoning")
    assert got == expected > 0


def test_promtool_accepts_the_exposition(served, tmp_path) -> None:
    promtool = binary("promtool")
    _, text = served
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_request_log_carries_otel_genai_attributes(
    served, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = served
    caplog.set_level(logging.INFO, logger="fairgate.requests")
    raw = client(server, "sk-bob").chat.completions.with_raw_response.create(
        model="sim-hidden", messages=[{"role": "user", "content": "log me"}]
    )
    usage = raw.parse().usage
    request_id = raw.headers["x-request-id"]
    deadline = time.monotonic() + 5
    found: list[logging.LogRecord] = []
    while not found and time.monotonic() < deadline:
        found = [
            r
            for r in caplog.records
            if r.name == "fairgate.requests" and r.fairgate["request_id"] == request_id  # type: ignore[attr-defined]
        ]
        time.sleep(0.02)
    assert len(found) == 1
    record = found[0]
    fields = json.loads(json.dumps(record.fairgate))  # type: ignore[attr-defined]
    assert fields["gen_ai.request.model"] == "sim-hidden"
    assert fields["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert fields["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert fields["gen_ai.usage.reasoning.output_tokens"] == (
        usage.completion_tokens_details.reasoning_tokens
    )
    assert (
        fields["gen_ai.usage.cache_read.input_tokens"] == usage.prompt_tokens_details.cached_tokens
    )
    assert fields["tenant"] == "bob" and fields["fairgate.status"] == "ok"
    line = _Formatter("%(message)s").format(record)
    assert json.loads(line.removeprefix("request finished ")) == fields
    assert not any(secret in line for secret in SECRETS)


class RestartingReplica:
    """A replica whose supervisor reports a restart count, like the vLLM provider's."""

    def __init__(self) -> None:
        self.url = None
        self.restarts = 0

    def info(self) -> dict[str, Any]:
        return {"engine": {"restarts": self.restarts}}


def test_restarts_follow_the_supervisor_and_gone_replicas_vanish(tmp_path) -> None:
    runtime = Runtime(sim_config(tmp_path))
    try:
        replica = RestartingReplica()
        model = SimpleNamespace(name="sim-hidden", replicas={"sim-hidden-x": replica})
        runtime.models["sim-hidden"] = model  # type: ignore[assignment]
        telemetry, registry = runtime.telemetry, runtime.registry
        labels = {"model": "sim-hidden", "replica": "sim-hidden-x"}

        def restarts() -> float | None:
            return registry.get_sample_value("fairgate_replica_restarts_total", labels)

        telemetry.sync_replicas()
        assert restarts() == 0
        replica.restarts = 2
        telemetry.sync_replicas()
        assert restarts() == 2
        replica.restarts = 0  # the actor was created anew: its supervisor counts from 0
        telemetry.sync_replicas()
        assert restarts() == 2
        replica.restarts = 1
        telemetry.sync_replicas()
        assert restarts() == 3
        model.replicas.clear()
        telemetry.sync_replicas()
        assert restarts() is None
    finally:
        runtime.recorder.close()


def test_served_tokens_never_go_backwards(tmp_path) -> None:
    runtime = Runtime(sim_config(tmp_path))
    try:
        telemetry = runtime.telemetry
        assert telemetry.served_total("alice", 100) == 100
        assert telemetry.served_total("alice", 90) == 100  # a downward correction
        assert telemetry.served_total("alice", 130) == 130
    finally:
        runtime.recorder.close()
