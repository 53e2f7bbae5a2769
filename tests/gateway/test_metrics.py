"""GatewayMetrics: names as exposed, values read back through the registry, bounded labels."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from fairgate.gateway.metrics import OTHER, GatewayMetrics
from fairgate.metering.usage import Usage

USAGE = Usage(prompt_tokens=40, cached_tokens=32, completion_tokens=20, reasoning_tokens=8)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> GatewayMetrics:
    metrics = GatewayMetrics(registry)
    metrics.restrict(tenants={"alice", "bob"}, models={"m"})
    return metrics


def exposed_names(registry: CollectorRegistry) -> set[str]:
    return {sample.name for family in registry.collect() for sample in family.samples}


def test_names_follow_the_conventions(metrics: GatewayMetrics, registry) -> None:
    metrics.observe_request(
        "alice", "m", "ok", USAGE, replica="m-0", cost=Decimal("0.5"), duration=1, queue_wait=0.1
    )
    metrics.observe_first_token("alice", "m", 0.2)
    metrics.observe_inter_token("alice", "m", 0.01)
    metrics.disagreements.labels("m", "completion_tokens").inc()
    metrics.ledger_records.labels("ok").inc()
    metrics.ledger_append.observe(0.001)
    metrics.replica_healthy.labels("m", "m-0").set(1)
    metrics.replica_added("m", "m-0")
    metrics.retries.labels("m").inc()
    metrics.auth_failures.inc()
    names = exposed_names(registry)
    for expected in (
        "fairgate_requests_total",
        "fairgate_tokens_total",
        "fairgate_cost_total",
        "fairgate_request_duration_seconds_bucket",
        "fairgate_time_to_first_token_seconds_bucket",
        "fairgate_queue_wait_seconds_bucket",
        "fairgate_inter_token_latency_seconds_bucket",
        "fairgate_prefix_prompt_tokens_total",
        "fairgate_prefix_cached_tokens_total",
        "fairgate_usage_disagreements_total",
        "fairgate_ledger_records_total",
        "fairgate_ledger_append_seconds_bucket",
        "fairgate_audits_total",
        "fairgate_replica_healthy",
        "fairgate_event_loop_lag_seconds",
        "fairgate_replica_restarts_total",
        "fairgate_retries_total",
        "fairgate_auth_failures_total",
    ):
        assert expected in names, expected
    for name in names:
        assert name.startswith("fairgate_"), name
        assert not name.endswith("_total_total"), name
    text = generate_latest(registry).decode()
    assert "vllm:" not in text
    # Counters carry _total; gauges and histograms never do.
    assert "fairgate_replica_healthy_total" not in text
    assert "_seconds_total" not in text


def test_values_read_back(metrics: GatewayMetrics, registry) -> None:
    metrics.observe_request("alice", "m", "ok", USAGE, replica="m-0", cost=Decimal("0.25"))
    metrics.observe_request("alice", "m", "ok", USAGE, replica="m-0", cost=Decimal("0.25"))
    metrics.observe_request("bob", "m", "replica_died", Usage(prompt_tokens=4), replica="m-1")
    get = registry.get_sample_value
    assert get("fairgate_requests_total", {"tenant": "alice", "model": "m", "status": "ok"}) == 2
    assert get("fairgate_cost_total", {"tenant": "alice", "model": "m"}) == pytest.approx(0.5)
    kinds = {"prompt": 80, "cached_prompt": 64, "completion": 40, "reasoning": 16}
    for kind, value in kinds.items():
        labels = {"tenant": "alice", "model": "m", "kind": kind}
        assert get("fairgate_tokens_total", labels) == value
    assert get("fairgate_prefix_cached_tokens_total", {"model": "m", "replica": "m-0"}) == 64
    assert metrics.prefix_hit_ratio("m", "m-0") == pytest.approx(0.8)
    assert metrics.prefix_hit_ratio("m", "m-1") == 0.0
    assert metrics.prefix_hit_ratio("m", "m-9") is None


def test_unknown_tenants_and_models_are_other(metrics: GatewayMetrics, registry) -> None:
    metrics.observe_request("mallory", "gpt-9-turbo", "model_not_found", Usage(), duration=0.01)
    metrics.observe_first_token("alice", "nope", 0.1)
    get = registry.get_sample_value
    labels = {"tenant": OTHER, "model": OTHER, "status": "model_not_found"}
    assert get("fairgate_requests_total", labels) == 1
    text = generate_latest(registry).decode()
    assert "mallory" not in text and "gpt-9-turbo" not in text and "nope" not in text


def test_unrestricted_metrics_keep_names(registry) -> None:
    metrics = GatewayMetrics(registry)
    assert metrics.labels("anyone", "any") == ("anyone", "any")


def test_replica_series_come_and_go(metrics: GatewayMetrics, registry) -> None:
    metrics.replica_added("m", "m-0")
    labels = {"model": "m", "replica": "m-0"}
    assert registry.get_sample_value("fairgate_replica_restarts_total", labels) == 0
    metrics.replica_healthy.labels("m", "m-0").set(1)
    metrics.replica_removed("m", "m-0")
    metrics.replica_removed("m", "m-0")  # twice is harmless
    assert registry.get_sample_value("fairgate_replica_restarts_total", labels) is None
    assert registry.get_sample_value("fairgate_replica_healthy", labels) is None


def test_each_instance_has_its_own_registry() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    GatewayMetrics(first).requests.labels("a", "m", "ok").inc()
    GatewayMetrics(second)  # the same names again: no clash, nothing global
    labels = {"tenant": "a", "model": "m", "status": "ok"}
    assert first.get_sample_value("fairgate_requests_total", labels) == 1
    assert second.get_sample_value("fairgate_requests_total", labels) is None
    assert REGISTRY.get_sample_value("fairgate_requests_total", labels) is None
