"""/readyz says why a gateway is not ready: each model, replica, state and engine error."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import httpx

from fairgate.gateway.ops import model_view, not_ready_reason, replica_view
from fairgate.replicas.base import Health
from tests.support.gateway_server import GatewayServer


class Supervised:
    """A replica whose engine supervisor reports, like the vLLM provider's."""

    def __init__(self, engine: dict[str, Any]) -> None:
        self.engine = engine

    def info(self) -> dict[str, Any]:
        return {"engine": self.engine}


def test_a_failing_engine_is_named_with_its_error_and_next_try() -> None:
    engine = {
        "state": "restarting", "error": "engine exited with code -4 (SIGILL)",
        "next_retry_at": time.time() + 30, "restarts": 4, "failed_starts": 4, "log_path": "/l",
    }  # fmt: skip
    model = SimpleNamespace(
        health={"m-0": Health.UNHEALTHY, "m-1": Health.STARTING},
        replicas={"m-0": Supervised(engine), "m-1": object()},
        ready=lambda: False,
    )
    view = model_view(model)  # type: ignore[arg-type]
    assert view["ready"] is False
    assert view["replicas"]["m-0"]["engine"] == "restarting"
    assert view["replicas"]["m-0"]["failed_starts"] == 4
    assert view["replicas"]["m-1"] == {"state": "starting"}
    reason = view["reason"]
    assert reason.startswith(
        "m-0 is restarting (engine exited with code -4 (SIGILL)), next try in "
    )
    assert reason.endswith("; m-1 is starting")


def test_no_replicas_and_plain_replicas() -> None:
    assert not_ready_reason({}) == "no replicas"
    assert replica_view(Health.HEALTHY, object()) == {"state": "healthy"}


def test_readyz_of_a_ready_gateway(gateway: GatewayServer) -> None:
    response = httpx.get(gateway.base_url + "/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and "reasons" not in body
    for view in body["models"].values():
        assert view["ready"] is True
        assert all(r["state"] == "healthy" for r in view["replicas"].values())
