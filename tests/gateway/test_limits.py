"""Tenant limits through a real gateway on the sim provider: 429s that name their limit,
tokens settled on real usage, concurrency, a budget in the ledger's price units, the
max_tokens ceiling, and one ledger record for every request, refused or not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from fairgate.metering.tokens import WordTokenizer
from tests.gateway.conftest import client, one_record
from tests.support.gateway_server import GatewayServer, sim_config

MESSAGES = [{"role": "user", "content": "Tell me about limits."}]
PROMPT = len(WordTokenizer().encode_chat(MESSAGES))
SIM_COMPLETION = 20  # the sim's 8 reasoning + 12 content tokens
# Room for one request's real usage plus another's estimate (max_tokens=50), not two estimates.
TPM = (PROMPT + SIM_COMPLETION) + (PROMPT + 50)
PRICE = {"prompt": 1000, "completion": 1000}  # per million tokens: 0.001 a token
ONE_REQUEST_COST = Decimal("0.001") * (PROMPT + SIM_COMPLETION)


def tenant(name: str, **controls: Any) -> dict[str, Any]:
    return {"name": name, "api_keys": [f"sk-{name}"], **controls}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    config = sim_config(
        tmp_path_factory.mktemp("limits"),
        tenants=[
            tenant("alice"),
            tenant("rpm", limits={"requests_per_minute": 3}),
            tenant("tpm", limits={"tokens_per_minute": TPM}),
            tenant("conc", limits={"max_concurrent": 1}),
            tenant("spender", limits={"budget": {"amount": str(2 * ONE_REQUEST_COST)}}),
            tenant("ceiling", limits={"max_tokens": 5}),
        ],
        models=[
            {"name": "sim-hidden", "provider": "sim", "replicas": 2},
            {"name": "sim-priced", "provider": "sim", "prices": PRICE},
            {
                "name": "sim-slow",
                "provider": "sim",
                "sim": {"seconds_per_token": 0.02, "content_tokens": 200},
            },
        ],
    )
    with GatewayServer(config) as server:
        yield server


def chat(gateway: GatewayServer, key: str, **body: Any) -> httpx.Response:
    body = {"model": "sim-hidden", "messages": MESSAGES, **body}
    return httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def assert_refused(response: httpx.Response, code: str, status: int = 429) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if status == 429:
        assert error["type"] == "rate_limit_error"
        assert int(response.headers["retry-after"]) >= 1
    return error


def test_requests_per_minute(gateway: GatewayServer) -> None:
    responses = [chat(gateway, "sk-rpm") for _ in range(4)]
    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    error = assert_refused(responses[3], "rate_limit_requests_per_minute")
    assert "requests_per_minute" in error["message"] and "limit 3" in error["message"]
    assert 50 <= int(responses[3].headers["retry-after"]) <= 60
    for response in responses:  # every request, refused or not, has exactly one record
        record = one_record(gateway, response.headers["x-request-id"])
        assert record["status_code"] == response.status_code
    assert one_record(gateway, responses[3].headers["x-request-id"])["status"] == "rate_limited"
    assert chat(gateway, "sk-alice").status_code == 200  # other tenants are not limited


def test_openai_client_sees_a_rate_limit_error(gateway: GatewayServer) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client(gateway, "sk-rpm").chat.completions.create(model="sim-hidden", messages=MESSAGES)
    assert caught.value.code == "rate_limit_requests_per_minute"
    assert caught.value.response.headers["retry-after"]


def test_tokens_are_counted_on_real_usage(gateway: GatewayServer) -> None:
    first = chat(gateway, "sk-tpm", max_tokens=50)
    assert first.json()["usage"]["total_tokens"] == PROMPT + SIM_COMPLETION
    # Admitted only because the first request was settled on its real 20 completion tokens:
    # on its estimate (50) the two would not fit.
    assert chat(gateway, "sk-tpm", max_tokens=50).status_code == 200
    error = assert_refused(chat(gateway, "sk-tpm", max_tokens=50), "rate_limit_tokens_per_minute")
    assert "tokens_per_minute" in error["message"]


async def test_max_concurrent(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(
        base_url=gateway.base_url, headers={"Authorization": "Bearer sk-conc"}, timeout=30
    ) as http:
        body = {"model": "sim-slow", "messages": MESSAGES, "max_tokens": 100}  # 2 s
        slow = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        deadline = time.monotonic() + 10
        while not gateway.runtime.controls.gate._held and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        refused = await http.post("/v1/chat/completions", json=body)
        assert_refused(refused, "rate_limit_max_concurrent")
        assert (await slow).status_code == 200
        assert (await http.post("/v1/chat/completions", json=body)).status_code == 200


def test_budget_in_the_ledgers_price_units(gateway: GatewayServer) -> None:
    ok = [
        chat(gateway, "sk-spender", model="sim-priced", max_tokens=SIM_COMPLETION) for _ in range(2)
    ]
    assert [r.status_code for r in ok] == [200, 200]
    costs = [Decimal(one_record(gateway, r.headers["x-request-id"])["cost"]["total"]) for r in ok]
    assert costs == [ONE_REQUEST_COST, ONE_REQUEST_COST]
    assert gateway.runtime.controls.gate.spent("spender") == sum(costs)
    refused = chat(gateway, "sk-spender", model="sim-priced", max_tokens=SIM_COMPLETION)
    error = assert_refused(refused, "budget_exceeded")
    assert "per day" in error["message"]
    assert int(refused.headers["retry-after"]) <= 86400
    assert one_record(gateway, refused.headers["x-request-id"])["status_code"] == 429


def test_max_tokens_ceiling(gateway: GatewayServer) -> None:
    refused = chat(gateway, "sk-ceiling", max_tokens=6)
    error = assert_refused(refused, "max_tokens_exceeded", status=400)
    assert error["param"] == "max_tokens" and "ceiling of 5" in error["message"]
    assert one_record(gateway, refused.headers["x-request-id"])["status"] == "invalid_request"
    unset = chat(gateway, "sk-ceiling").json()  # no max_tokens: the ceiling applies
    assert unset["usage"]["completion_tokens"] == 5
    assert unset["choices"][0]["finish_reason"] == "length"
    assert chat(gateway, "sk-ceiling", max_tokens=5).status_code == 200


def test_a_budget_without_max_tokens_holds_the_whole_context(tmp_path: Any) -> None:
    # 1000 tokens of context at 0.001 each: up to about 1.0 for a request without max_tokens,
    # past the budget of 0.5 (the model's default of 256 would have fit); 20 tokens fit.
    model = {"name": "sim-priced", "provider": "sim", "prices": PRICE, "max_model_len": 1000}
    config = sim_config(
        tmp_path,
        tenants=[tenant("spender", limits={"budget": {"amount": "0.5"}})],
        models=[model],
    )
    with GatewayServer(config) as server:
        assert_refused(chat(server, "sk-spender", model="sim-priced"), "budget_exceeded")
        assert chat(server, "sk-spender", model="sim-priced", max_tokens=20).status_code == 200
