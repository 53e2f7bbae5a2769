"""Fast checks of the side-by-side benchmark (``bench.peers``): loopback only, no peers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bench.peers.benchmark import Upstreams
from bench.peers.engine import EngineSettings, Sequence, SimEngine
from bench.peers.gateways import (
    Direct,
    Fairgate,
    GatewayUnavailable,
    LiteLLM,
    StartContext,
    VllmRouter,
)
from bench.peers.peer_env import PeerEnv
from bench.peers.report import jain, percentile, render_table, summarize
from bench.peers.upstream import create_app
from bench.peers.workloads import FLOOD_TENANTS, FloodSpec, run_flood
from fairgate.gateway.config import parse_config

FAST = EngineSettings(slots=2, step_s=0.002, prefill_s_per_token=0.0, cache_tokens=4096)


def test_jain_and_percentile() -> None:
    assert jain([5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert jain([9.0, 0.0, 0.0]) == pytest.approx(1 / 3)
    assert jain([0.0, 0.0]) is None
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([1.0, 2.0], 100) == 2.0


async def test_engine_is_fifo_with_slots_and_caches_prefixes() -> None:
    engine = SimEngine(FAST)
    engine.start()
    try:
        prompt = tuple(range(64))
        first = engine.submit(prompt, 3)
        words = [w async for w in engine.stream(first)]
        assert len(words) == 3 and first.cached == 0
        again = engine.submit(prompt, 3)
        assert len([w async for w in engine.stream(again)]) == 3
        assert again.cached == 64  # four full 16-token blocks
        # Two slots: a third request waits until one of the first two ends.
        seqs = [engine.submit((1000 + n,) * 20, 5) for n in range(3)]
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        assert engine.num_running <= 2
        await asyncio.gather(*[_consume(engine, s) for s in seqs])
        assert engine.stats.generated_tokens == 3 + 3 + 15
        assert engine.reset() and engine.stats.requests == 0
    finally:
        await engine.stop()


async def _consume(engine: SimEngine, seq: Sequence) -> list[str]:
    return [w async for w in engine.stream(seq)]


async def test_upstream_speaks_openai_with_cached_usage() -> None:
    engine = SimEngine(FAST)
    engine.start()
    transport = httpx.ASGITransport(app=create_app(engine))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            body = {"model": "sim", "messages": [{"role": "user", "content": "hi " * 40}]}
            reply = await client.post("/v1/chat/completions", json={**body, "max_tokens": 4})
            assert reply.status_code == 200
            assert reply.json()["usage"]["completion_tokens"] == 4
            stream = await client.post(
                "/v1/chat/completions",
                json={**body, "stream": True, "stream_options": {"include_usage": True}},
            )
            lines = [line for line in stream.text.splitlines() if line.startswith("data: ")]
            assert lines[-1] == "data: [DONE]"
            assert '"cached_tokens":32' in lines[-2]
            metrics = (await client.get("/metrics")).text
            assert 'vllm:num_requests_running{model_name="sim"} 0' in metrics
            assert (await client.get("/v1/models")).json()["data"][0]["id"] == "sim"
    finally:
        await engine.stop()


def test_fairgate_config_is_valid(tmp_path: Path) -> None:
    context = StartContext(
        ["http://127.0.0.1:1", "http://127.0.0.1:2"], ["x", "y"], tmp_path, PeerEnv(tmp_path)
    )
    config = parse_config(Fairgate("dlpm", "d2lpm").config(context, tmp_path / "data"))
    model = config.model("sim")
    assert model is not None and model.provider == "openai" and len(model.endpoints) == 2
    assert config.scheduler.policy == "dlpm" and config.scheduler.router == "d2lpm"
    assert [t.name for t in config.tenants] == ["x", "y"]


def test_missing_peers_are_reported_not_faked(tmp_path: Path) -> None:
    peers = PeerEnv(tmp_path, problems={"litellm": "pip failed", "vllm-router": "pip failed"})
    context = StartContext(["http://127.0.0.1:1"], ["x"], tmp_path, peers)
    for gateway in (LiteLLM(), VllmRouter("cache_aware")):
        with pytest.raises(GatewayUnavailable, match="pip failed"):
            gateway.start(context)


def test_flood_through_direct_counts_tokens_and_cache(tmp_path: Path) -> None:
    upstreams = Upstreams(FAST, tmp_path).start()
    try:
        context = StartContext(upstreams.urls, list(FLOOD_TENANTS), tmp_path, PeerEnv(tmp_path))
        target = Direct().start(context)
        spec = FloodSpec(
            window_s=2.0, heavy_in_flight=4, light_in_flight=1, max_tokens=4, system_words=60
        )
        outcome = asyncio.run(run_flood(target, spec))
        totals = upstreams.totals()
    finally:
        upstreams.stop()
    assert outcome.records and all(r.error is None for r in outcome.records)
    row = summarize("direct", "-", False, outcome, FLOOD_TENANTS[1:], totals, 0.0)
    assert row.window_tokens["heavy"] > row.window_tokens["light1"] > 0, row.window_tokens
    assert sum(row.replica_requests) == len(outcome.records)
    assert row.cached_ratio is not None and row.cached_ratio > 0.5  # shared system prompts
    table = render_table("t", FLOOD_TENANTS, [row], "light")
    assert "direct" in table and "ref" in table
