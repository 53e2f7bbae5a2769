"""Keep-alives through a real gateway (sim provider): a stream whose client would hear nothing
for a while (hidden reasoning, a retry waiting for a slot) gets SSE comment lines, which the
official client skips; a stream with something to show gets none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import httpx
import openai
import pytest

from fairgate.replicas.errors import ReplicaFailed
from fairgate.replicas.stream import EngineDelta, EngineEvent, EngineRequest
from tests.gateway.conftest import one_record
from tests.support.gateway_server import GatewayServer, sim_config

AUTH = {"Authorization": "Bearer sk-alice"}
KEEPALIVE_S = 0.2
SLOW = {"seconds_per_token": 0.05, "reasoning_tokens": 20, "content_tokens": 4}  # 1 s hidden


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    config = sim_config(
        tmp_path_factory.mktemp("keepalive"),
        guards={"keepalive_s": KEEPALIVE_S},
        scheduler={"inflight_initial": 1, "adaptive_inflight": False},
        models=[
            {"name": "sim-think", "provider": "sim", "reasoning": "hidden", "sim": SLOW},
            {"name": "sim-shown", "provider": "sim", "reasoning": "visible", "sim": SLOW},
            {
                "name": "sim-retry",
                "provider": "sim",
                "reasoning": "hidden",
                "replicas": 2,
                "sim": {"seconds_per_token": 0.02, "reasoning_tokens": 4, "content_tokens": 60},
            },
        ],
    )
    with GatewayServer(config) as server:
        failed: list[str] = []
        for replica_id, replica in server.runtime.models["sim-retry"].replicas.items():
            replica.stream = _failing_once(replica.stream, replica_id, failed)  # type: ignore[method-assign]
        yield server


def _failing_once(stream: Any, replica_id: str, failed: list[str]) -> Any:
    """The replica's stream; a request asking "fail once" breaks after two hidden deltas, on
    the first replica that serves it."""

    async def failing(request: EngineRequest) -> AsyncGenerator[EngineEvent, None]:
        deltas = 0
        async for event in stream(request):
            yield event
            deltas += isinstance(event, EngineDelta)
            if deltas == 2 and "fail once" in str(request.body) and not failed:
                failed.append(replica_id)
                raise ReplicaFailed("the engine went away", replica_id=replica_id)

    return failing


def lines_of(gateway: GatewayServer, model: str, text: str = "Hello there.") -> list[str]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": True}
    with httpx.stream(
        "POST", gateway.base_url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30
    ) as response:
        assert response.status_code == 200
        return [line for line in response.iter_lines() if line]


def before_data(lines: list[str]) -> list[str]:
    first = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    return lines[:first]


def test_hidden_reasoning_is_bridged_by_comment_lines(gateway: GatewayServer) -> None:
    lines = lines_of(gateway, "sim-think")
    beats = before_data(lines)
    assert len(beats) >= 2 and set(beats) == {": keep-alive"}, lines[:8]
    assert lines[-1] == "data: [DONE]"
    assert not [line for line in lines if line.startswith(":") and line not in beats]


def test_the_official_client_skips_them(gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="sk-alice", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="sim-think", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == SLOW["content_tokens"]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_stream_with_something_to_show_gets_none(gateway: GatewayServer) -> None:
    lines = lines_of(gateway, "sim-shown")
    assert before_data(lines) == []
    assert not [line for line in lines if line.startswith(":")]


async def test_a_retry_waiting_for_a_slot_beats(gateway: GatewayServer) -> None:
    body = {"model": "sim-retry", "messages": [{"role": "user", "content": "hog"}]}
    async with httpx.AsyncClient(base_url=gateway.base_url, headers=AUTH, timeout=30) as http:
        hog = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        await asyncio.sleep(0.3)  # the hog holds one replica's one slot for about 1.3 s
        retried = {**body, "stream": True, "messages": [{"role": "user", "content": "fail once"}]}
        async with http.stream("POST", "/v1/chat/completions", json=retried) as response:
            assert response.status_code == 200
            lines = [line async for line in response.aiter_lines() if line]
        assert (await hog).status_code == 200
    beats = before_data(lines)
    assert len(beats) >= 2 and set(beats) == {": keep-alive"}, lines[:8]
    assert lines[-1] == "data: [DONE]"
    record = one_record(gateway, response.headers["x-request-id"])
    assert record["status"] == "ok"
    assert gateway.runtime.registry.get_sample_value(
        "fairgate_retries_total", {"model": "sim-retry"}
    )


def test_the_responses_api_beats_too(gateway: GatewayServer) -> None:
    body = {"model": "sim-think", "input": "Hello there.", "stream": True}
    with httpx.stream(
        "POST", gateway.base_url + "/v1/responses", json=body, headers=AUTH, timeout=30
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines.count(": keep-alive") >= 2, lines[:8]
    assert lines[-1].startswith("data:") and "response.completed" in lines[-1]
