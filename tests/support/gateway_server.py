"""A real gateway on a loopback port, in a background thread, for tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from fairgate.gateway.app import create_app
from fairgate.gateway.config import Config, parse_config
from fairgate.gateway.runtime import Runtime


class GatewayServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.runtime = Runtime(config)
        self.app = create_app(config, self.runtime)
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(target=self._server.run, name="gateway", daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GatewayServer:
        self._thread.start()
        deadline = time.monotonic() + 120
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)

    def records(self) -> list[dict[str, Any]]:
        return list(self.runtime.recorder.ledger.records())


def sim_config(data_dir: Path, **overrides: Any) -> Config:
    """Two tenants; sim models with reasoning hidden (2 replicas), visible, and a slow one."""
    data: dict[str, Any] = {
        "data_dir": str(data_dir),
        "admin_key": "admin-secret",
        "tenants": [
            {"name": "alice", "weight": 1.0, "api_keys": ["sk-alice"]},
            {"name": "bob", "weight": 1.0, "api_keys": ["sk-bob"]},
        ],
        "models": [
            {"name": "sim-hidden", "provider": "sim", "reasoning": "hidden", "replicas": 2},
            {"name": "sim-visible", "provider": "sim", "reasoning": "visible"},
            {
                "name": "sim-slow",
                "provider": "sim",
                "reasoning": "hidden",
                "sim": {"seconds_per_token": 0.02, "content_tokens": 200},
            },
        ],
    }
    data.update(overrides)
    return parse_config(data)
