"""SIGKILL a real vLLM server (the tiny reasoning model) in the middle of a stream, with a
second, healthy upstream beside it. The cut stream ends with an upstream error promptly, its
record bills what was generated, later requests go to the healthy replica, and the chain
verifies. Run under ``flock /tmp/fairgate-vllm.lock``: one real engine at a time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fairgate.gateway.config import parse_config
from tests.faults.checks import assert_settled
from tests.faults.tally import TALLY
from tests.faults.upstream import ask, count_errors
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway_server import GatewayServer
from tests.support.tiny_reasoner import build_tiny_reasoner
from tests.support.vllm_server import VllmServer, start_vllm_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[VllmServer]:
    model = build_tiny_reasoner()
    with start_vllm_server(model, log_path=tmp_path / "vllm.log", served_model_name="up") as s:
        yield s


def _gateway(tmp: Path, engine: VllmServer, healthy: FakeUpstream) -> GatewayServer:
    model = {
        "name": "up",
        "provider": "openai",
        "endpoints": [engine.base_url, healthy.url],
        "upstream_model": "up",
        "tokenizer": str(build_tiny_reasoner()),
        "reasoning": "hidden",
        "max_model_len": 2048,
    }
    tenants = [{"name": "alice", "api_keys": ["sk-alice"]}]
    config = {"data_dir": str(tmp / "gw"), "tenants": tenants, "models": [model]}
    return GatewayServer(parse_config({**config, "audit": {"embeddings": "off"}}))


def _stream_and_kill(server: GatewayServer, engine: VllmServer) -> tuple[str, str, float]:
    """Stream long answers until one runs on the engine; kill the engine at its first
    visible chunk. Returns the request id, what the client read, and how long the stream
    took to end after the kill."""
    body = {
        "model": "up",
        "stream": True,
        "max_tokens": 1500,
        "ignore_eos": True,  # a long answer, so the kill lands mid-stream
        "messages": [{"role": "user", "content": "What is the answer to everything?"}],
    }
    headers = {"Authorization": "Bearer sk-alice"}
    for _ in range(6):
        TALLY.requests += 1
        with (
            httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http,
            http.stream("POST", "/v1/chat/completions", json=body) as response,
        ):
            if response.headers.get("x-fairgate-replica") != "up-0":
                response.read()
                continue
            lines = response.iter_lines()
            read = [next(lines)]
            while not read[-1].startswith("data: "):  # keep-alives while it thinks (hidden)
                read.append(next(lines))
            engine.process.kill()
            killed = time.monotonic()
            TALLY.fault("vLLM SIGKILL mid-stream")
            read += list(lines)
            return response.headers["x-request-id"], "\n".join(read), time.monotonic() - killed
    raise AssertionError("no stream ran on the real engine")


def test_vllm_killed_mid_stream(tmp_path: Path, engine: VllmServer) -> None:
    with FakeUpstream() as healthy, _gateway(tmp_path, engine, healthy) as server:
        request_id, text, ended_after = _stream_and_kill(server, engine)
        assert ended_after < 10, f"the cut stream took {ended_after:.1f} s to end"
        events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
        assert "error" in events[-1], events[-1]
        assert events[-1]["error"]["code"] == "upstream_error"
        TALLY.expected_errors += 1
        assert "[DONE]" not in text and "<think>" not in text
        modes = [True, False, True]
        later = [ask(server, stream=s, content=f"after {n}") for n, s in enumerate(modes)]
        assert all(a.status == 200 and a.done for a in later), later
        count_errors(later)
        records = {r["request_id"]: r for r in server.records()}
        ids = [request_id, *(a.request_id for a in later)]
        assert_settled(server, [r for r in records if r not in ids] + ids)
    record = records[request_id]
    assert record["status"] == "replica_died" and record["replica"] == "up-0"
    assert record["usage"]["completion_tokens"] > 0
