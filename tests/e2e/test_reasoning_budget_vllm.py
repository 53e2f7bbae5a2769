"""A tenant's max_reasoning_tokens in front of a real vLLM (the tiny reasoning model, which
thinks 22 tokens): sent as ``thinking_token_budget`` where the upstream has a reasoning parser,
so the engine ends the reasoning at N and the answer goes on; cut by the gateway where it does
not. Either way the bill has at most N reasoning tokens, each one committed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fairgate.gateway.config import parse_config
from tests.gateway.conftest import one_record
from tests.support.gateway_server import GatewayServer
from tests.support.tiny_reasoner import build_tiny_reasoner
from tests.support.vllm_server import VllmServer, start_vllm_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
BUDGET = 5
MESSAGES = [{"role": "user", "content": "What is the answer to everything?"}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with start_vllm_server(
        build_tiny_reasoner(), log_path=log, served_model_name="tiny-upstream"
    ) as server:  # deepseek_r1 reasoning parser
        yield server


@pytest.fixture(scope="module")
def gateway(
    engine: VllmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    common = {
        "provider": "openai",
        "endpoints": [engine.base_url],
        "tokenizer": str(build_tiny_reasoner()),
        "reasoning": "hidden",
    }
    config = parse_config(
        {
            "data_dir": str(tmp_path_factory.mktemp("gateway")),
            "audit": {"embeddings": "off"},
            "tenants": [
                {"name": "capped", "api_keys": ["sk-capped"], "max_reasoning_tokens": BUDGET},
                {"name": "free", "api_keys": ["sk-free"]},
            ],
            "models": [
                {"name": "engine-cut", "reasoning_parser": "deepseek_r1", **common},
                {"name": "gateway-cut", **common},  # the upstream's parser not named
            ],
        }
    )
    with GatewayServer(config) as server:
        yield server


def _chat(gateway: GatewayServer, key: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, **extra}
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response


def _billed(gateway: GatewayServer, response: httpx.Response) -> int:
    record = one_record(gateway, response.headers["x-request-id"])
    reasoning = int(record["usage"]["completion_tokens_details"]["reasoning_tokens"])
    assert record["commitment"]["leaves"] == reasoning
    return reasoning


def test_without_a_budget_the_model_thinks_its_full_length(gateway: GatewayServer) -> None:
    response = _chat(gateway, "sk-free", "engine-cut")
    assert _billed(gateway, response) > BUDGET


def test_the_engine_ends_the_reasoning_and_the_answer_goes_on(gateway: GatewayServer) -> None:
    response = _chat(gateway, "sk-capped", "engine-cut")
    data = response.json()
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["choices"][0]["message"]["content"]
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] <= BUDGET
    assert _billed(gateway, response) <= BUDGET


def test_without_the_engines_budget_the_gateway_cuts(gateway: GatewayServer) -> None:
    response = _chat(gateway, "sk-capped", "gateway-cut")
    data = response.json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert _billed(gateway, response) == BUDGET
    streamed = _chat(
        gateway,
        "sk-capped",
        "gateway-cut",
        stream=True,
        stream_options={"include_usage": True},
    )
    assert '"finish_reason":"length"' in streamed.text.replace(" ", "")
    assert _billed(gateway, streamed) == BUDGET
