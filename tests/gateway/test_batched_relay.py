"""Steps that arrive in one upstream read leave in one write: the same chunks as one write
each, nothing held across a wait for the upstream, hidden reasoning still hidden."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import httpx
import pytest

from fairgate.replicas.stream import EngineDelta, EngineEvent, EngineRequest
from tests.gateway.conftest import one_record
from tests.support.gateway_server import GatewayServer, sim_config

AUTH = {"Authorization": "Bearer sk-alice"}
PAUSE_S = 1.5


def _batched(stream: Any, size: int, pause_after: int | None) -> Any:
    """The replica's stream in reads of ``size`` deltas, and a pause of PAUSE_S after delta
    number ``pause_after`` (the end of a read)."""

    async def batched(request: EngineRequest) -> AsyncGenerator[EngineEvent, None]:
        deltas: list[EngineDelta] = []
        async for event in stream(request):
            if not isinstance(event, EngineDelta):
                yield event
                continue
            deltas.append(event)
            if len(deltas) == size or event.finish_reason:
                for delta in deltas[:-1]:
                    delta.more = True
                for delta in deltas:
                    yield delta
                deltas = []
        for delta in deltas:
            yield delta

    async def paused(request: EngineRequest) -> AsyncGenerator[EngineEvent, None]:
        count = 0
        async for event in batched(request):
            yield event
            if isinstance(event, EngineDelta):
                count += 1
                if count == pause_after:
                    await asyncio.sleep(PAUSE_S)

    return paused


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    config = sim_config(tmp_path_factory.mktemp("batched"))
    with GatewayServer(config) as server:
        yield server


def _stream(gateway: GatewayServer, model: str) -> tuple[list[dict[str, Any]], list[float], str]:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    chunks, arrivals, start = [], [], time.monotonic()
    with httpx.stream(
        "POST", gateway.base_url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30
    ) as response:
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunks.append(json.loads(line[6:]))
                arrivals.append(time.monotonic() - start)
    return chunks, arrivals, request_id


def _deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [choice["delta"] for chunk in chunks for choice in chunk["choices"]]


@pytest.mark.parametrize("model", ["sim-hidden", "sim-visible"])
def test_batched_reads_relay_the_same_chunks_without_holding_any(
    gateway: GatewayServer, model: str
) -> None:
    plain, _, _ = _stream(gateway, model)
    for replica in gateway.runtime.models[model].replicas.values():
        replica.stream = _batched(replica.stream, 3, 12)  # type: ignore[method-assign]
    batched, arrivals, request_id = _stream(gateway, model)
    assert _deltas(batched) == _deltas(plain)
    if model == "sim-hidden":
        assert not any("reasoning" in delta for delta in _deltas(batched))
    one_record(gateway, request_id)
    # Every chunk of the four reads before the pause reached the client before it ended: the
    # 12 steps' chunks, less the sim's 8 reasoning steps where reasoning is hidden.
    early = [at for at in arrivals if at < PAUSE_S]
    assert len(early) == (4 if model == "sim-hidden" else 12)
    assert len(arrivals) > len(early)
