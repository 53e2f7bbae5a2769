"""Bad input gets a 4xx OpenAI-shaped error, never a 500, and still one ledger record."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import client, one_record, records_for
from tests.support.gateway_server import GatewayServer

GOOD = {"model": "sim-hidden", "messages": [{"role": "user", "content": "hi"}]}


def _post(
    server: GatewayServer,
    body: Any,
    *,
    key: str | None = "sk-alice",
    raw: bytes | None = None,
    path: str = "/v1/chat/completions",
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=server.base_url, headers=headers) as http:
        if raw is not None:
            return http.post(path, content=raw, headers={"content-type": "application/json"})
        return http.post(path, json=body)


def _assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert response.headers["x-request-id"].startswith("req_")
    return error


CASES = [
    ("malformed json", None, b'{"model": "sim-hidden", "messages": [', 400, None),
    ("not an object", None, b"[1, 2, 3]", 400, None),
    ("missing messages", {"model": "sim-hidden"}, None, 400, "messages"),
    ("missing model", {"messages": GOOD["messages"]}, None, 400, "model"),
    ("empty messages", {**GOOD, "messages": []}, None, 400, "messages"),
    ("wrong type max_tokens", {**GOOD, "max_tokens": "ten"}, None, 400, "max_tokens"),
    ("negative max_tokens", {**GOOD, "max_tokens": -5}, None, 400, "max_tokens"),
    ("temperature out of range", {**GOOD, "temperature": 7}, None, 400, "temperature"),
    (
        "bad role",
        {**GOOD, "messages": [{"role": "wizard", "content": "x"}]},
        None,
        400,
        "messages.0.role",
    ),
    ("stream not bool", {**GOOD, "stream": "yes"}, None, 400, "stream"),
    ("n > 1", {**GOOD, "n": 3}, None, 400, "n"),
    ("unknown model", {**GOOD, "model": "gpt-17"}, None, 404, "model"),
]


@pytest.mark.parametrize(
    ("name", "body", "raw", "status", "param"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_chat_requests(
    gateway: GatewayServer, name: str, body: Any, raw: bytes | None, status: int, param: str | None
) -> None:
    response = _post(gateway, body, raw=raw)
    error = _assert_openai_error(response, status)
    if param is not None:
        assert error["param"] == param
    record = one_record(gateway, response.headers["x-request-id"])
    assert record["status_code"] == status and record["status"] != "ok"


def test_unknown_model_code(gateway: GatewayServer) -> None:
    error = _assert_openai_error(_post(gateway, {**GOOD, "model": "nope"}), 404)
    assert error["code"] == "model_not_found"


@pytest.mark.parametrize("key", [None, "sk-wrong", ""])
def test_bad_keys_are_401_and_unrecorded(gateway: GatewayServer, key: str | None) -> None:
    before = len(gateway.records())
    response = _post(gateway, GOOD, key=key)
    error = _assert_openai_error(response, 401)
    assert error["type"] == "authentication_error"
    assert records_for(gateway, response.headers["x-request-id"]) == []
    assert len(gateway.records()) == before


def test_bad_completion_prompt(gateway: GatewayServer) -> None:
    response = _post(gateway, {"model": "sim-hidden", "prompt": 42}, path="/v1/completions")
    _assert_openai_error(response, 400)


def test_openai_client_raises_typed_errors(gateway: GatewayServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="sk-nobody").chat.completions.create(**GOOD)
    with pytest.raises(openai.NotFoundError):
        client(gateway).chat.completions.create(**{**GOOD, "model": "missing"})
    with pytest.raises(openai.BadRequestError):
        client(gateway).chat.completions.create(**{**GOOD, "max_tokens": -1})


def test_unknown_route_is_openai_shaped(gateway: GatewayServer) -> None:
    with httpx.Client(base_url=gateway.base_url) as http:
        _assert_openai_error(http.get("/v1/nothing-here"), 404)
        _assert_openai_error(http.get("/v1/chat/completions"), 405)
