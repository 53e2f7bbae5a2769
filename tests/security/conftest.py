from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fairgate.replicas.sim import REASONING_WORDS
from tests.support.gateway_server import GatewayServer, sim_config

AUDIT_KEY = "audit-secret"
HIDDEN = re.compile(r"\b(" + "|".join(REASONING_WORDS) + r")\b")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    config = sim_config(
        tmp_path_factory.mktemp("security"),
        audit_key=AUDIT_KEY,
        audit={"embeddings": "off", "full_openings": ["alice"]},
    )
    with GatewayServer(config) as server:
        yield server


def call(
    server: GatewayServer, method: str, path: str, key: str | None, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.request(method, server.base_url + path, headers=headers, timeout=30, **kwargs)


def chat(server: GatewayServer, key: str, **body: Any) -> httpx.Response:
    payload = {"model": "sim-hidden", "messages": [{"role": "user", "content": "hello"}], **body}
    return call(server, "POST", "/v1/chat/completions", key, json=payload)
