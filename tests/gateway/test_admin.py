"""The admin endpoints, reload, and retiring a replica, on the sim provider (no engine)."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from fairgate.gateway.admin import ADMIN_KEY_FILE, admin_key
from fairgate.gateway.cli_replicas import gateway_url, render_table
from fairgate.gateway.config import parse_config
from fairgate.gateway.dispatcher import Dispatcher
from fairgate.gateway.errors import Unavailable
from fairgate.gateway.runtime import EMBEDDED_MODEL, Runtime, with_default_model
from fairgate.scheduler import Scheduler, SchedulerConfig
from tests.support.gateway_server import GatewayServer, sim_config

ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with GatewayServer(sim_config(tmp_path_factory.mktemp("admin"))) as server:
        yield server


@pytest.mark.parametrize(
    ("headers", "status", "kind"),
    [
        ({}, 401, "authentication_error"),
        ({"Authorization": "Bearer nope"}, 401, "authentication_error"),
        ({"Authorization": "Basic admin-secret"}, 401, "authentication_error"),
        ({"Authorization": "Bearer sk-alice"}, 403, "permission_error"),
    ],
)
def test_admin_endpoints_need_the_admin_key(
    gateway: GatewayServer, headers: dict[str, str], status: int, kind: str
) -> None:
    for method, path in (("GET", "/admin/replicas"), ("POST", "/admin/reload")):
        response = httpx.request(method, gateway.base_url + path, headers=headers)
        assert response.status_code == status
        error = response.json()["error"]
        assert error["type"] == kind and error["message"]


def test_replicas_lists_every_model(gateway: GatewayServer) -> None:
    data = httpx.get(gateway.base_url + "/admin/replicas", headers=ADMIN).json()
    assert data["ready"] is True and data["pending_models"] == []
    hidden = data["models"]["sim-hidden"]
    assert hidden["provider"] == "sim" and hidden["ready"] is True
    assert [r["replica"] for r in hidden["replicas"]] == ["sim-hidden-sim-0", "sim-hidden-sim-1"]
    assert {r["health"] for r in hidden["replicas"]} == {"healthy"}


def test_reload_reports_what_needs_a_restart(gateway: GatewayServer, tmp_path: Path) -> None:
    path = tmp_path / "fairgate.yaml"
    data = sim_config(gateway.config.data_dir).model_dump(mode="json")
    data["models"][1]["replicas"] = 3
    path.write_text(yaml.safe_dump(data))
    gateway.runtime.config_path = path
    response = httpx.post(gateway.base_url + "/admin/reload", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {"scaled": [], "needs_restart": ["models.sim-visible.replicas"]}

    path.write_text("models: [{name: x, provider: nope}]")
    response = httpx.post(gateway.base_url + "/admin/reload", headers=ADMIN)
    assert response.status_code == 400
    assert "models.0.provider" in response.json()["error"]["message"]


def test_without_admin_key_one_is_generated_privately(tmp_path: Path) -> None:
    config = parse_config({"data_dir": str(tmp_path)})
    key = admin_key(config)
    path = tmp_path / ADMIN_KEY_FILE
    assert key.startswith("sk-fg-admin-") and path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert admin_key(config) == key  # read back, not replaced
    configured = parse_config({"data_dir": str(tmp_path), "admin_key": "mine"})
    assert admin_key(configured) == "mine"


def test_no_models_means_the_embedded_default() -> None:
    config = with_default_model(parse_config({}))
    (model,) = config.models
    assert model.name == EMBEDDED_MODEL and model.provider == "vllm" and model.model is None
    assert model.reasoning == "visible" and model.replicas == 1
    configured = parse_config({"models": [{"name": "s", "provider": "sim"}]})
    assert with_default_model(configured) is configured


async def test_removing_a_replica_fails_queued_requests_that_cannot_move() -> None:
    scheduler = Scheduler(SchedulerConfig(inflight_initial=1))
    scheduler.set_tenant("t", 1.0)
    dispatcher = Dispatcher(scheduler)
    dispatcher.add_replica("r0", "m")
    with pytest.raises(Unavailable):  # joins unhealthy
        await dispatcher.acquire("a", "t", "m", (1, 2), 4)
    dispatcher.replica_health("r0", True)
    assert await dispatcher.acquire("a", "t", "m", (1, 2), 4) == "r0"
    queued = asyncio.create_task(dispatcher.acquire("b", "t", "m", (1, 2), 4))
    await asyncio.sleep(0)
    dispatcher.remove_replica("r0")
    with pytest.raises(Unavailable, match="r0 was removed"):
        await asyncio.wait_for(queued, 1)
    dispatcher.finish("a")  # the running job still finishes normally


async def test_a_retired_replica_takes_no_work_and_is_not_health_checked(tmp_path: Path) -> None:
    runtime = Runtime(sim_config(tmp_path))
    await runtime.start()
    try:
        model = runtime.models["sim-hidden"]
        runtime.retire_replica(model, "sim-hidden-sim-1")
        assert "sim-hidden-sim-1" not in model.health
        assert "sim-hidden-sim-1" in model.replicas  # still streaming what it had
        await runtime.check_health()
        assert "sim-hidden-sim-1" not in model.health
        picks = {
            await runtime.dispatcher.acquire(f"j{i}", "alice", "sim-hidden", (i,), 4)
            for i in range(4)
        }
        assert picks == {"sim-hidden-sim-0"}
        for i in range(4):
            runtime.dispatcher.finish(f"j{i}")
        runtime.forget_replica(model, "sim-hidden-sim-1")
        assert list(model.replicas) == ["sim-hidden-sim-0"] and not runtime.draining
    finally:
        await runtime.stop()


def test_replica_table() -> None:
    data = {
        "ready": True,
        "pending_models": ["later"],
        "models": {
            "tiny": {
                "replicas": [
                    {
                        "replica": "tiny-0",
                        "health": "healthy",
                        "url": "http://127.0.0.1:1",
                        "active_requests": 2,
                        "engine": {"state": "running", "pid": 42, "restarts": 1,
                                   "running_since": 100.0},
                    },
                    {"replica": "tiny-1", "health": "draining", "url": None},
                    {"replica": "tiny-2", "health": "unhealthy", "url": None,
                     "engine": {"state": "restarting", "error": "exited with code -4",
                                "next_retry_at": 190.0, "log_path": "/logs/tiny-2.log"}},
                ]
            }
        },
        "failed_models": {"later": "could not be prepared: no such tokenizer"},
    }  # fmt: skip
    lines = render_table(data, now=130.0).splitlines()
    assert lines[0].split() == [
        "MODEL", "REPLICA", "HEALTH", "ENGINE", "URL", "PID", "RESTARTS", "ACTIVE", "UP",
    ]  # fmt: skip
    assert lines[1].split() == [
        "tiny", "tiny-0", "healthy", "running", "http://127.0.0.1:1", "42", "1", "2", "30s",
    ]  # fmt: skip
    assert lines[2].split()[:4] == ["tiny", "tiny-1", "draining", "-"]
    assert lines[3].split()[:4] == ["tiny", "tiny-2", "unhealthy", "restarting"]
    assert lines[4].split()[:3] == ["later", "-", "failed"]
    assert lines[5] == "later: could not be prepared: no such tokenizer"
    assert lines[6] == "tiny-2: exited with code -4; next try in 60s (log: /logs/tiny-2.log)"
    assert lines[-1] == "ready: yes"


def test_gateway_url_from_the_listen_address() -> None:
    assert gateway_url(parse_config({"listen": {"host": "0.0.0.0", "port": 9}})) == (
        "http://127.0.0.1:9"
    )
    assert gateway_url(parse_config({"listen": {"host": "::1"}})) == "http://[::1]:8000"
