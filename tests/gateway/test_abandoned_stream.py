"""A streaming client that leaves while the gateway is blocked writing to it (a full socket):
the framework cancels the response inside ``send`` and abandons the body's generator, so the
request's record and its engine slot must not wait for the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fairgate.gateway.app import create_app
from fairgate.gateway.runtime import Runtime
from fairgate.replicas.sim import SimReplica
from tests.support.gateway_server import sim_config

BODY = {"model": "sim-slow", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", b"Bearer sk-alice"),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _leave_while_sending(app: Any) -> list[dict[str, Any]]:
    gone = asyncio.Event()
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": json.dumps(BODY).encode(), "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and len(sent) >= 3:
            gone.set()  # the client leaves while this write waits on its full socket
            await asyncio.Event().wait()

    await asyncio.wait_for(app(_scope(), receive, send), 30)
    return sent


async def test_a_client_gone_during_a_write_still_gets_its_record(
    tmp_path: Path, no_gc: None
) -> None:
    runtime = Runtime(sim_config(tmp_path))
    app = create_app(runtime.config, runtime)
    async with app.router.lifespan_context(app):
        sent = await _leave_while_sending(app)
        assert sent[0]["status"] == 200
        replica = next(iter(runtime.models["sim-slow"].replicas.values()))
        assert isinstance(replica, SimReplica)
        deadline = time.monotonic() + 5
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            records = list(runtime.recorder.ledger.records())
            if records and replica.running == 0:
                break
            await asyncio.sleep(0.05)
        assert [r["status"] for r in records] == ["client_disconnected"]
        assert replica.running == 0  # the engine's slot is free again
