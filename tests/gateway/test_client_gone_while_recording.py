"""A client that leaves while its request is being recorded (the answer is complete, the
tenant's usage is being settled): the watcher's cancellation lands inside the finish path,
which anyio's shield does not hold against a native ``Task.cancel``. The record must still
be written, once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from fairgate.gateway.app import create_app
from fairgate.gateway.runtime import Runtime
from fairgate.metering.usage import Usage
from tests.gateway.test_abandoned_stream import _scope
from tests.support.gateway_server import sim_config

pytestmark = pytest.mark.timeout(60)


async def _leave_while_settling(tmp_path: Path, stream: bool) -> list[dict[str, Any]]:
    runtime = Runtime(sim_config(tmp_path))
    app = create_app(runtime.config, runtime)
    gone = asyncio.Event()
    settle = runtime.controls.settle

    async def slow_settle(request_id: str, usage: Usage) -> None:
        gone.set()  # the client leaves now, while the finish path waits
        await asyncio.sleep(0.2)
        await settle(request_id, usage)

    runtime.controls.settle = slow_settle  # type: ignore[method-assign]
    body = {"model": "sim-hidden", "messages": [{"role": "user", "content": "hi"}]}
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            data = json.dumps({**body, "stream": stream}).encode()
            return {"type": "http.request", "body": data, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass  # the client is gone: what is sent is dropped, as by the server

    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app(_scope(), receive, send), 30)  # quietly: no error raised
        deadline = time.monotonic() + 5
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not records:
            records = list(runtime.recorder.ledger.records())
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # and no second record comes
        return list(runtime.recorder.ledger.records())


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_a_client_gone_while_its_request_is_recorded_still_gets_one_record(
    tmp_path: Path, stream: bool
) -> None:
    records = await _leave_while_settling(tmp_path, stream)
    assert len(records) == 1, records
    assert records[0]["status"] == "ok"  # the answer was complete when the client left
