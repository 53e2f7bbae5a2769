"""The generation endpoints' hot path: one watching task per request that cancels the work
when the client leaves (and only then), the plain-ASGI routes still in the OpenAPI schema,
and the bytes a client gets from an upstream read: UTF-8 text, one record per request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from fairgate.gateway import api
from fairgate.gateway.client_gone import ClientGone
from fairgate.gateway.event_stream import EventStream, LastPiece
from fairgate.gateway.generation import Visible
from fairgate.gateway.plain_route import PlainRoute
from fairgate.gateway.render import Renderer
from tests.gateway.conftest import one_record
from tests.support.gateway_server import GatewayServer, sim_config

AUTH = {"Authorization": "Bearer sk-alice"}


class _Client:
    """An ASGI ``receive`` whose client leaves when told to."""

    def __init__(self) -> None:
        self.left = asyncio.Event()

    async def receive(self) -> dict[str, object]:
        await self.left.wait()
        return {"type": "http.disconnect"}


async def test_a_client_that_leaves_cancels_the_work_once_and_the_cancel_is_taken_back() -> None:
    client = _Client()
    watch = ClientGone(client.receive)  # type: ignore[arg-type]
    cancelled = 0
    try:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, client.left.set)
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        cancelled += 1
        assert watch.absorb()
    finally:
        watch.close()
    assert cancelled == 1 and watch.gone
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # nothing pending for this task any more


async def test_a_closed_watch_cancels_nothing_and_an_outside_cancel_stays_one() -> None:
    client = _Client()
    watch = ClientGone(client.receive)  # type: ignore[arg-type]
    watch.close()
    client.left.set()
    await asyncio.sleep(0.02)
    assert not watch.gone

    async def served() -> str:
        inner = ClientGone(_Client().receive)  # type: ignore[arg-type]
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            assert not inner.absorb()  # not the client's: it must propagate
            raise
        finally:
            inner.close()
        return "finished"

    task = asyncio.ensure_future(served())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_event_stream_ends_its_body_once_when_the_client_leaves() -> None:
    client = _Client()
    ended: list[str] = []
    sent: list[dict[str, object]] = []

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            client.left.set()
            await asyncio.sleep(5)
            yield b"data: 2\n\n"
        finally:
            ended.append("body")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    response = EventStream(body(), {"x-request-id": "r"})
    await response({"type": "http"}, client.receive, send)  # type: ignore[arg-type]
    assert ended == ["body"]
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n"]  # nothing after the leave
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]  # type: ignore[operator]


def test_plain_routes_stay_in_the_schema_and_refuse_other_methods() -> None:
    app = FastAPI()
    app.include_router(api.router)
    paths = app.openapi()["paths"]
    assert "post" in paths["/v1/chat/completions"] and "post" in paths["/v1/completions"]


def test_a_chunk_carries_text_as_utf8_json() -> None:
    renderer = Renderer("chat", response_id="chatcmpl-1", model="m", created=1, body={})
    raw = renderer.chunk_bytes(Visible('é\u2028\n"x'), first=True)
    assert raw.startswith(b"data: {") and raw.endswith(b"}\n\n") and raw.count(b"\n") == 2
    chunk = json.loads(raw[6:])
    assert chunk["choices"][0]["delta"] == {"role": "assistant", "content": 'é\u2028\n"x'}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with GatewayServer(sim_config(tmp_path_factory.mktemp("hot"))) as server:
        yield server


def test_get_on_a_generation_endpoint_is_405_in_openai_shape(gateway: GatewayServer) -> None:
    response = httpx.get(gateway.base_url + "/v1/chat/completions", headers=AUTH, timeout=10)
    assert response.status_code == 405
    assert "error" in response.json()


def test_a_stream_and_a_non_stream_each_end_in_one_record(gateway: GatewayServer) -> None:
    body = {"model": "sim-hidden", "messages": [{"role": "user", "content": "Hi"}]}
    for stream in (True, False):
        response = httpx.post(
            gateway.base_url + "/v1/chat/completions",
            json={**body, "stream": stream},
            headers=AUTH,
            timeout=30,
        )
        assert response.status_code == 200
        record = one_record(gateway, response.headers["x-request-id"])
        assert record["status"] == "ok"
        if stream:
            assert response.text.endswith("data: [DONE]\n\n")
            last = json.loads(response.text.split("data: ")[-2])
            assert last["receipt"]["signature"] == record["signature"]


def test_request_ids_are_fresh_in_a_forked_child_and_never_repeat() -> None:
    import os
    import re

    from fairgate.gateway.request_ids import new_request_id

    ids = {new_request_id() for _ in range(600)}  # more than one 4 KiB pool
    assert len(ids) == 600 and all(re.fullmatch(r"req_[0-9a-f]{32}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id must not be the parent's next one
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child != new_request_id() and child not in ids


async def test_the_last_piece_ends_the_response_in_the_same_message() -> None:
    sent: list[dict[str, object]] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield LastPiece(b"data: [DONE]\n\n")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    response = EventStream(body(), {"x-request-id": "r"})
    await response({"type": "http"}, _Client().receive, send)  # type: ignore[arg-type]
    bodies = [(m["body"], m["more_body"]) for m in sent[1:]]
    assert bodies == [(b"data: 1\n\n", True), (b"data: [DONE]\n\n", False)]


def test_hot_routes_answer_errors_in_openai_shape_with_their_request_id(
    gateway: GatewayServer,
) -> None:
    url = gateway.base_url + "/v1/chat/completions"
    cases = [
        ({}, {"model": "sim-hidden", "messages": []}, 401, "invalid_api_key"),
        (AUTH, {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, None),
        (AUTH, {"model": "sim-hidden"}, 400, None),
    ]
    for headers, body, status, code in cases:
        response = httpx.post(url, json=body, headers=headers, timeout=10)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["message"] and (code is None or error["code"] == code)
        request_id = response.headers["x-request-id"]
        assert request_id.startswith("req_")
        if status != 401:  # refused before the key is known: no tenant to bill
            assert one_record(gateway, request_id)["status_code"] == status
    hot = {route.path for route in gateway.app.router.routes if isinstance(route, PlainRoute)}
    assert hot == {"/v1/chat/completions", "/v1/completions"}


def test_request_metrics_keep_counting_per_label_set() -> None:
    from prometheus_client import CollectorRegistry

    from fairgate.gateway.metrics import GatewayMetrics
    from fairgate.metering.usage import Usage

    metrics = GatewayMetrics(CollectorRegistry())
    tenants = {"a"}
    metrics.restrict(tenants=tenants, models={"m"})
    for _ in range(2):
        metrics.observe_request("a", "m", "ok", Usage(5, 1, 4, 2), cost=0.5, duration=0.1)
    metrics.observe_request("b", "m", "ok", Usage(1, 0, 1, 0))  # not configured: 'other'
    tenants.add("b")  # configured later: its own series from now on
    metrics.observe_request("b", "m", "ok", Usage(1, 0, 1, 0))

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("fairgate_requests_total", tenant="a", model="m", status="ok") == 2
    assert value("fairgate_tokens_total", tenant="a", model="m", kind="reasoning") == 4
    assert value("fairgate_tokens_total", tenant="a", model="m", kind="cached_prompt") == 2
    assert value("fairgate_cost_total", tenant="a", model="m") == 1.0
    assert value("fairgate_requests_total", tenant="other", model="m", status="ok") == 1
    assert value("fairgate_requests_total", tenant="b", model="m", status="ok") == 1


async def test_the_request_id_middleware_serves_hot_routes_and_their_errors() -> None:
    from fairgate.gateway.app import RequestIdMiddleware
    from fairgate.gateway.errors import InvalidRequest

    async def refused(scope: object, receive: object, send: object) -> None:
        raise InvalidRequest("no")

    async def broken(scope: object, receive: object, send: object) -> None:
        raise RuntimeError("bug")

    async def rest(scope: object, receive: object, send: object) -> None:
        raise AssertionError("a hot path went through the rest of the application")

    middleware = RequestIdMiddleware(rest, hot={"/refused": refused, "/broken": broken})  # type: ignore[arg-type]
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/refused", "headers": []}
    await middleware(scope, _Client().receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["message"] == "no"  # type: ignore[arg-type]
    assert (b"x-request-id", scope["state"]["request_id"].encode()) in sent[0]["headers"]  # type: ignore[index, operator]
    with pytest.raises(RuntimeError, match="bug"):  # for ServerErrorMiddleware's 500
        await middleware({**scope, "path": "/broken"}, _Client().receive, send)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="rest of"):  # not POST: the application
        await middleware({**scope, "method": "GET"}, _Client().receive, send)  # type: ignore[arg-type]
