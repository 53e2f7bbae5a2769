"""A tenant's max_reasoning_tokens, enforced at the gateway on the sim engine (8 hidden tokens
then 12 visible): never billed or committed past N, the answer ends with "length"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fairgate.gateway.config import parse_config
from fairgate.gateway.guards import engine_reasoning_budget
from fairgate.gateway.replica_set import ModelRuntime
from fairgate.metering.reasoning import Markers
from fairgate.metering.tokens import WordTokenizer
from fairgate.replicas.sim import REASONING_WORDS
from tests.gateway.conftest import one_record
from tests.support.gateway_server import GatewayServer, sim_config

MESSAGES = [{"role": "user", "content": "Think about it."}]
SIM_REASONING, SIM_CONTENT = 8, 12


def tenant(name: str, budget: int | None) -> dict[str, Any]:
    return {"name": name, "api_keys": [f"sk-{name}"], "max_reasoning_tokens": budget}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    config = sim_config(
        tmp_path_factory.mktemp("reasoning-budget"),
        tenants=[tenant("three", 3), tenant("zero", 0), tenant("roomy", 8), tenant("free", None)],
    )
    with GatewayServer(config) as server:
        yield server


def post(gateway: GatewayServer, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        gateway.base_url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


@pytest.mark.parametrize(("key", "budget"), [("sk-three", 3), ("sk-zero", 0)])
@pytest.mark.parametrize("model", ["sim-hidden", "sim-visible"])
def test_chat_is_cut_at_the_budget(
    gateway: GatewayServer, key: str, budget: int, model: str
) -> None:
    response = post(gateway, key, "/v1/chat/completions", {"model": model, "messages": MESSAGES})
    data = response.json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == budget
    record = one_record(gateway, response.headers["x-request-id"])
    assert record["usage"]["completion_tokens_details"]["reasoning_tokens"] == budget
    assert record["commitment"]["leaves"] == budget
    if model == "sim-visible":  # the client sees only the reasoning it is billed for
        shown = data["choices"][0]["message"].get("reasoning") or ""
        assert len(shown.split()) == budget


def test_streamed_chat_is_cut_and_billed_within_the_budget(gateway: GatewayServer) -> None:
    body = {
        "model": "sim-hidden",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    text = post(gateway, "sk-three", "/v1/chat/completions", body).text
    payloads = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    finishes = [c["finish_reason"] for p in payloads for c in p["choices"] if c["finish_reason"]]
    assert finishes == ["length"]
    assert payloads[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3
    assert not any(word in text for word in REASONING_WORDS)
    assert text.rstrip().endswith("data: [DONE]")


def test_completions_with_in_band_markers_are_cut(gateway: GatewayServer) -> None:
    body = {"model": "sim-hidden", "prompt": "Once upon a time"}
    data = post(gateway, "sk-three", "/v1/completions", body).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3
    assert data["choices"][0]["text"] == ""


@pytest.mark.parametrize("key", ["sk-roomy", "sk-free"])
def test_a_budget_the_reasoning_fits_changes_nothing(gateway: GatewayServer, key: str) -> None:
    response = post(
        gateway, key, "/v1/chat/completions", {"model": "sim-hidden", "messages": MESSAGES}
    )
    data = response.json()
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] == SIM_REASONING + SIM_CONTENT
    assert len(data["choices"][0]["message"]["content"].split()) == SIM_CONTENT


def _model(provider: str, parser: str | None) -> ModelRuntime:
    entry: dict[str, Any] = {"name": "m", "provider": provider, "reasoning_parser": parser}
    if provider == "openai":
        entry["endpoints"] = ["http://127.0.0.1:9"]
    config = parse_config({"models": [entry]}).models[0]
    return ModelRuntime(config, WordTokenizer(), Markers())


def test_the_engine_is_asked_only_where_it_supports_a_budget() -> None:
    tenant_config = parse_config({"tenants": [tenant("t", 100)]}).tenants[0]
    for provider in ("vllm", "openai"):
        asked: dict[str, Any] = {"thinking_token_budget": 500}
        engine_reasoning_budget(tenant_config, _model(provider, "deepseek_r1"), asked)
        assert asked["thinking_token_budget"] == 100  # never above the tenant's
        lower: dict[str, Any] = {"thinking_token_budget": 20}
        engine_reasoning_budget(tenant_config, _model(provider, "deepseek_r1"), lower)
        assert lower["thinking_token_budget"] == 20
    for provider, parser in (("vllm", None), ("openai", None), ("sim", "deepseek_r1")):
        body: dict[str, Any] = {}  # vLLM refuses the field without a reasoning parser
        engine_reasoning_budget(tenant_config, _model(provider, parser), body)
        assert "thinking_token_budget" not in body
