from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.gateway_server import GatewayServer, sim_config


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    config = sim_config(tmp_path_factory.mktemp("gateway"))
    with GatewayServer(config) as server:
        yield server


def client(server: GatewayServer, key: str = "sk-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)


def async_client(server: GatewayServer, key: str = "sk-alice") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)


def records_for(server: GatewayServer, request_id: str) -> list[dict[str, Any]]:
    return [r for r in server.records() if r["request_id"] == request_id]


def one_record(server: GatewayServer, request_id: str) -> dict[str, Any]:
    found = records_for(server, request_id)
    assert len(found) == 1, f"{len(found)} ledger records for {request_id}"
    return found[0]
