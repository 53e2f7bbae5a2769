"""Reading an engine's /metrics: vLLM 0.32's own exposition, renamed for re-export.

The sample was produced by vLLM 0.32.0's ``PrometheusStatLogger`` (the code behind a vLLM
server's ``/metrics``) for the tiny test model, after recording one scheduler step with 3
running and 2 waiting requests, a KV cache 25 % full and 3832 prefix-cache queries of which
2688 hit. ``tests/support/capture_vllm_metrics.py`` regenerates it.
"""

from __future__ import annotations

import httpx
import pytest

from fairgate.replicas.engine_metrics import (
    ENGINE_METRICS,
    EngineMetricsError,
    Kind,
    parse_engine_metrics,
    scrape_engine_metrics,
)
from tests.support.fake_engine import VLLM_METRICS, FakeEngine


def test_parses_the_captured_vllm_sample() -> None:
    reading = parse_engine_metrics(VLLM_METRICS.read_text())
    assert reading.values == {
        "fairgate_engine_requests_running": 3.0,
        "fairgate_engine_requests_waiting": 2.0,
        "fairgate_engine_kv_cache_usage_ratio": 0.25,
        "fairgate_engine_prefix_cache_queried_tokens": 3832.0,
        "fairgate_engine_prefix_cache_hit_tokens": 2688.0,
        "fairgate_engine_prompt_tokens": 0.0,
        "fairgate_engine_generation_tokens": 0.0,
        "fairgate_engine_preemptions": 0.0,
    }


def test_every_engine_metric_is_in_the_sample_except_legacy_names() -> None:
    text = VLLM_METRICS.read_text()
    for metric in ENGINE_METRICS:
        assert metric.name.startswith("fairgate_engine_")
        assert not metric.name.endswith("_total")  # the client adds it to counters
        assert metric.sources[0] in text, metric.sources[0]
        if metric.kind is Kind.COUNTER:
            assert all(s.endswith("_total") for s in metric.sources)


def test_data_parallel_ranks_are_summed_and_fractions_averaged() -> None:
    text = "\n".join(
        [
            "# TYPE vllm:num_requests_running gauge",
            'vllm:num_requests_running{engine="0",model_name="m"} 2',
            'vllm:num_requests_running{engine="1",model_name="m"} 5',
            "# TYPE vllm:gpu_cache_usage_perc gauge",  # the name before vLLM 0.10
            'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.2',
            'vllm:gpu_cache_usage_perc{engine="1",model_name="m"} 0.6',
            "# TYPE vllm:prefix_cache_hits counter",
            'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 10',
            'vllm:prefix_cache_hits_total{engine="1",model_name="m"} 30',
            'vllm:prefix_cache_hits_created{engine="0",model_name="m"} 1.7e9',
            "",
        ]
    )
    values = parse_engine_metrics(text).values
    assert values["fairgate_engine_requests_running"] == 7
    assert values["fairgate_engine_kv_cache_usage_ratio"] == pytest.approx(0.4)
    assert values["fairgate_engine_prefix_cache_hit_tokens"] == 40
    assert "fairgate_engine_requests_waiting" not in values  # absent, not 0


def test_garbage_is_an_error() -> None:
    with pytest.raises(EngineMetricsError):
        parse_engine_metrics('vllm:num_requests_running{engine="0" 1 2 3\n')


async def test_scrape_reads_a_live_endpoint_and_tolerates_failures() -> None:
    async with httpx.AsyncClient() as client:
        with FakeEngine() as engine:
            reading = await scrape_engine_metrics(client, engine.url + "/")
            assert reading is not None
            assert reading.get("fairgate_engine_requests_waiting") == 2.0
            assert engine.requests == ["/metrics"]
            engine.metrics_status = 404
            assert await scrape_engine_metrics(client, engine.url) is None
            engine.metrics_status, engine.metrics_text = 200, "{not prometheus"
            assert await scrape_engine_metrics(client, engine.url) is None
            gone = engine.url
        assert await scrape_engine_metrics(client, gone, timeout=1.0) is None
