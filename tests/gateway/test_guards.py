"""Request guards through a real gateway (sim provider): body size, context length, the queue
timeout and an upstream that stalls before and after the stream started."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import httpx
import pytest

from fairgate.replicas.stream import EngineDelta, EngineEvent, EngineRequest
from tests.gateway.conftest import one_record
from tests.support.gateway_server import GatewayServer, sim_config

MESSAGES = [{"role": "user", "content": "Hello there."}]
AUTH = {"Authorization": "Bearer sk-alice"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    config = sim_config(
        tmp_path_factory.mktemp("guards"),
        guards={"queue_timeout_s": 0.5, "stall_timeout_s": 0.5},
        scheduler={"inflight_initial": 1, "adaptive_inflight": False},
        models=[
            {"name": "sim-short", "provider": "sim", "max_model_len": 40},
            {"name": "sim-slow", "provider": "sim", "sim": {"seconds_per_token": 0.15}},
            {"name": "sim-stall", "provider": "sim"},
            {"name": "sim-mute", "provider": "sim"},
        ],
    )
    with GatewayServer(config) as server:
        for name, after in (("sim-stall", 10), ("sim-mute", 0)):  # 8 hidden, then content
            for replica in server.runtime.models[name].replicas.values():
                replica.stream = _stalling(replica.stream, after)  # type: ignore[method-assign]
        yield server


def _stalling(stream: Any, after: int) -> Any:
    """The replica's stream, silent for good after ``after`` deltas."""

    async def stalled(request: EngineRequest) -> AsyncGenerator[EngineEvent, None]:
        deltas = 0
        async for event in stream(request):
            if isinstance(event, EngineDelta) and event.text:
                if deltas == after:
                    await asyncio.sleep(3600)
                deltas += 1
            yield event

    return stalled


def chat(gateway: GatewayServer, **body: Any) -> httpx.Response:
    body = {"model": "sim-short", "messages": MESSAGES, **body}
    return httpx.post(
        gateway.base_url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30
    )


def test_body_size_limit(gateway: GatewayServer) -> None:
    big = b'{"model": "sim-short", "messages": [], "pad": "' + b"x" * (16 * 1024 * 1024) + b'"}'
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions", content=big, headers=AUTH, timeout=30
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert one_record(gateway, response.headers["x-request-id"])["status_code"] == 413


def test_context_length_is_checked_before_dispatch(gateway: GatewayServer) -> None:
    long = [{"role": "user", "content": "word " * 50}]
    response = chat(gateway, messages=long)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and "40 tokens" in error["message"]
    record = one_record(gateway, response.headers["x-request-id"])
    assert record["replica"] is None and record["status"] == "invalid_request"


async def test_queue_timeout_is_a_503_with_retry_after(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, headers=AUTH, timeout=30) as http:
        body = {"model": "sim-slow", "messages": MESSAGES}  # 20 tokens x 150 ms: 3 s
        first = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        await asyncio.sleep(0.5)  # the first holds the replica's one slot
        queued = await http.post("/v1/chat/completions", json=body)
        assert queued.status_code == 503
        assert queued.json()["error"]["code"] == "queue_timeout"
        assert int(queued.headers["retry-after"]) >= 1
        assert one_record(gateway, queued.headers["x-request-id"])["status"] == "timeout"
        assert (await first).status_code == 200


def test_an_upstream_silent_from_the_start_is_a_504(gateway: GatewayServer) -> None:
    response = chat(gateway, model="sim-mute")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    record = one_record(gateway, response.headers["x-request-id"])
    assert record["status"] == "timeout" and record["status_code"] == 504


def test_a_stream_that_stalls_after_starting_ends_with_an_error_event(
    gateway: GatewayServer,
) -> None:
    response = chat(gateway, model="sim-stall", stream=True)
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    last = json.loads(events[-1])
    assert last["error"]["code"] == "upstream_timeout"
    assert "[DONE]" not in events
    assert len(events) >= 2  # content went out before the stall
    record = one_record(gateway, response.headers["x-request-id"])
    assert record["status"] == "timeout" and record["status_code"] == 504


async def _paced(gaps: list[float]) -> AsyncGenerator[int, None]:
    for index, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield index


async def test_stall_guard_fires_on_one_long_gap_only() -> None:
    from fairgate.gateway.guards import UpstreamStalled, stall_guard

    seen: list[int] = []
    with pytest.raises(UpstreamStalled):
        async for item in stall_guard(_paced([0.05] * 6 + [0.5]), 0.2):
            seen.append(item)  # 0.3 s of events in all, each well within the timeout
    assert seen == list(range(6))
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_stall_guard_does_not_count_the_readers_own_time() -> None:
    from fairgate.gateway.guards import stall_guard

    seen = []
    async for item in stall_guard(_paced([0.01, 0.01, 0.01]), 0.1):
        await asyncio.sleep(0.25)  # a slow client: the upstream is not stalled
        seen.append(item)
    assert seen == [0, 1, 2]


async def test_stall_guard_leaves_an_outside_cancel_alone() -> None:
    from fairgate.gateway.guards import stall_guard

    async def read() -> None:
        async for _ in stall_guard(_paced([10.0]), 5.0):
            pass

    task = asyncio.create_task(read())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
