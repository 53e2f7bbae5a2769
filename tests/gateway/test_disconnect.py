"""A client that goes away: the upstream generation is cancelled and one record remains."""

from __future__ import annotations

import time

import httpx
import pytest

from fairgate.replicas.sim import SimReplica
from tests.gateway.conftest import one_record, records_for
from tests.support.gateway_server import GatewayServer

BODY = {"model": "sim-slow", "messages": [{"role": "user", "content": "a long answer please"}]}
FULL = 8 + 200


def _wait_for_record(server: GatewayServer, request_id: str) -> None:
    deadline = time.monotonic() + 10
    while not records_for(server, request_id) and time.monotonic() < deadline:
        time.sleep(0.05)


def _replica(server: GatewayServer) -> SimReplica:
    replica = next(iter(server.runtime.models["sim-slow"].replicas.values()))
    assert isinstance(replica, SimReplica)
    return replica


def test_streaming_client_disconnect(gateway: GatewayServer) -> None:
    with (
        httpx.Client(
            base_url=gateway.base_url, headers={"Authorization": "Bearer sk-alice"}
        ) as http,
        http.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as response,
    ):
        request_id = response.headers["x-request-id"]
        next(response.iter_lines())
    _wait_for_record(gateway, request_id)
    record = one_record(gateway, request_id)
    assert record["status"] == "client_disconnected"
    assert 0 < record["usage"]["completion_tokens"] < FULL
    assert _replica(gateway).running == 0  # the upstream generation was cancelled


def test_non_streaming_client_gives_up(gateway: GatewayServer) -> None:
    before = {r["request_id"] for r in gateway.records()}
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.Client(
            base_url=gateway.base_url,
            headers={"Authorization": "Bearer sk-alice"},
            timeout=httpx.Timeout(10, read=0.5),
        ) as http,
    ):
        http.post("/v1/chat/completions", json=BODY)
    deadline = time.monotonic() + 10
    new: list[dict] = []
    while not new and time.monotonic() < deadline:
        new = [r for r in gateway.records() if r["request_id"] not in before]
        time.sleep(0.05)
    assert len(new) == 1
    assert new[0]["status"] == "client_disconnected"
    assert new[0]["usage"]["completion_tokens"] < FULL
    assert _replica(gateway).running == 0
