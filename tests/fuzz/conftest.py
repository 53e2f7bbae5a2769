from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.gateway_server import GatewayServer, sim_config

KEY = {"Authorization": "Bearer sk-alice"}
MODELS = ("fast-hidden", "fast-visible")


def fuzz_config(tmp: Any) -> Any:
    sim = {"reasoning_tokens": 3, "content_tokens": 4}
    return sim_config(
        tmp,
        models=[
            {"name": "fast-hidden", "provider": "sim", "reasoning": "hidden", "sim": sim},
            {"name": "fast-visible", "provider": "sim", "reasoning": "visible", "sim": sim},
        ],
        audit={"embeddings": "off"},
    )


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with GatewayServer(fuzz_config(tmp_path_factory.mktemp("fuzz"))) as server:
        yield server


def assert_clean(status: int, text: str, what: str) -> None:
    """No 5xx, no traceback or Python internals in any answer."""
    assert status < 500, f"{what}: {status} {text[:500]}"
    for marker in ("Traceback", 'File "', "Exception(", "pydantic_core"):
        assert marker not in text, f"{what}: {marker!r} in {text[:500]}"
