"""Tenant settings through the admin API (``PATCH /admin/tenants/{name}``): a weight, limits
and a reasoning budget that apply for the next request, survive a restart and a reload of the
file, and are dropped with ``DELETE .../settings``; each action a ledger record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fairgate.gateway.config import TenantConfig, TenantLimits
from fairgate.gateway.tenant_settings import TenantSettings, TenantSettingsStore
from tests.gateway.conftest import one_record
from tests.support.gateway_server import GatewayServer, sim_config

ADMIN = {"Authorization": "Bearer admin-secret"}
CHAT = {"model": "sim-hidden", "messages": [{"role": "user", "content": "hi"}]}


def chat(gateway: GatewayServer, key: str) -> int:
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    return response.status_code


def patch(gateway: GatewayServer, name: str, body: Any) -> httpx.Response:
    return httpx.patch(
        f"{gateway.base_url}/admin/tenants/{name}", json=body, headers=ADMIN, timeout=30
    )


def scheduler_weight(gateway: GatewayServer, name: str) -> float:
    return gateway.runtime.scheduler._tenants.weight(name)


def test_settings_apply_at_once_and_survive_a_restart(tmp_path: Path) -> None:
    with GatewayServer(sim_config(tmp_path)) as gateway:
        assert [chat(gateway, "sk-bob") for _ in range(2)] == [200, 200]
        response = patch(gateway, "bob", {"weight": 3.0, "limits": {"requests_per_minute": 2}})
        assert response.status_code == 200, response.text
        shown = response.json()
        assert shown["weight"] == 3.0 and shown["limits"]["requests_per_minute"] == 2
        assert shown["settings"] == {"weight": 3.0, "limits": {"requests_per_minute": 2}}
        assert scheduler_weight(gateway, "bob") == 3.0
        assert [chat(gateway, "sk-bob") for _ in range(3)] == [200, 200, 429]
        assert chat(gateway, "sk-alice") == 200  # another tenant's limits are untouched
        record = one_record(gateway, response.headers["x-request-id"])
        assert (record["status"], record["tenant"]) == ("admin_tenant_updated", "bob")

    with GatewayServer(sim_config(tmp_path)) as gateway:  # same data_dir, a new process
        assert scheduler_weight(gateway, "bob") == 3.0
        assert gateway.runtime.controls.tenant("bob").limits.requests_per_minute == 2  # type: ignore[union-attr]
        cleared = httpx.delete(
            f"{gateway.base_url}/admin/tenants/bob/settings", headers=ADMIN, timeout=30
        )
        assert cleared.status_code == 200 and cleared.json()["settings"] == {}
        assert cleared.json()["weight"] == 1.0 and cleared.json()["limits"] is None
        assert scheduler_weight(gateway, "bob") == 1.0
        record = one_record(gateway, cleared.headers["x-request-id"])
        assert record["status"] == "admin_tenant_settings_cleared"


def test_a_reload_keeps_the_admin_settings_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fairgate.yaml"
    path.write_text(sim_config(tmp_path).model_dump_json())  # JSON is YAML
    with GatewayServer(sim_config(tmp_path)) as gateway:
        gateway.runtime.config_path = path
        assert patch(gateway, "alice", {"max_reasoning_tokens": 3}).status_code == 200
        reload = httpx.post(f"{gateway.base_url}/admin/reload", headers=ADMIN, timeout=30)
        assert reload.status_code == 200
        assert gateway.runtime.controls.reasoning_budget("alice") == 3
        assert gateway.runtime.controls.reasoning_budget("bob") is None


@pytest.mark.parametrize(
    ("name", "body", "status", "code"),
    [
        ("nobody", {"weight": 2.0}, 404, "tenant_not_found"),
        ("bob", {"weight": 0}, 400, None),
        ("bob", {"weight": None}, 400, None),
        ("bob", {"colour": "red"}, 400, None),
        ("bob", {"limits": {"requests_per_minute": 0}}, 400, None),
        ("bob", [1, 2], 400, None),
    ],
)
def test_bad_settings_are_refused_and_recorded(
    tmp_path: Path, name: str, body: Any, status: int, code: str | None
) -> None:
    with GatewayServer(sim_config(tmp_path)) as gateway:
        response = patch(gateway, name, body)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        if code is not None:
            assert error["code"] == code
        record = one_record(gateway, response.headers["x-request-id"])
        assert record["status"] == "admin_tenant_update_failed"
        assert record["status_code"] == status
        assert not (tmp_path / "tenant_settings.json").exists()


def test_the_endpoints_need_the_admin_key(tmp_path: Path) -> None:
    with GatewayServer(sim_config(tmp_path)) as gateway:
        for key, status in (("nope", 401), ("sk-alice", 403)):
            headers = {"Authorization": f"Bearer {key}"}
            url = gateway.base_url + "/admin/tenants/alice"
            assert httpx.patch(url, json={"weight": 9.0}, headers=headers).status_code == status
            assert httpx.delete(url + "/settings", headers=headers).status_code == status
        assert scheduler_weight(gateway, "alice") == 1.0


def test_the_store_lays_settings_over_the_file(tmp_path: Path) -> None:
    store = TenantSettingsStore(tmp_path)
    store.set("a", TenantSettings.model_validate({"weight": 2.0}))
    store.set("a", TenantSettings.model_validate({"limits": None}))  # merged, not replaced
    store.set("keys-only", TenantSettings.model_validate({"max_reasoning_tokens": 5}))
    limited = TenantConfig(name="a", limits=TenantLimits(requests_per_minute=1))
    file = [limited, TenantConfig(name="b")]
    applied = {t.name: t for t in store.apply(file)}
    assert applied["a"].weight == 2.0 and applied["a"].limits is None
    assert applied["b"] == file[1]
    assert applied["keys-only"].max_reasoning_tokens == 5 and applied["keys-only"].api_keys == []
    assert store.clear("a") and not store.clear("a")
    assert {t.name: t for t in store.apply(file)}["a"] == file[0]
