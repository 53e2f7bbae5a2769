"""The tenant and key admin endpoints on the sim provider: a key shown once and stored hashed,
revocation effective for the next request, tenants with weights and limits, a reload that
applies tenants live, and one ledger record for every admin action."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from fairgate.gateway.auth import KEYS_FILE
from tests.gateway.conftest import one_record
from tests.support.gateway_server import GatewayServer, sim_config

ADMIN = {"Authorization": "Bearer admin-secret"}
CHAT = {"model": "sim-hidden", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with GatewayServer(sim_config(tmp_path_factory.mktemp("admin-tenants"))) as server:
        yield server


def chat(gateway: GatewayServer, key: str) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def admin(gateway: GatewayServer, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, gateway.base_url + path, headers=ADMIN, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/admin/tenants"), ("POST", "/admin/keys"), ("DELETE", "/admin/keys/x")],
)
def test_the_endpoints_need_the_admin_key(gateway: GatewayServer, method: str, path: str) -> None:
    for key, status in (("nope", 401), ("sk-alice", 403)):
        response = httpx.request(
            method, gateway.base_url + path, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == status


def test_a_key_is_shown_once_stored_hashed_and_revoked_for_the_next_request(
    gateway: GatewayServer,
) -> None:
    created = admin(gateway, "POST", "/admin/keys", json={"tenant": "carol", "weight": 2.0})
    assert created.status_code == 200
    body = created.json()
    key, id_ = body["key"], body["id"]
    assert key.startswith("sk-fg-") and id_.startswith("key_") and body["tenant"] == "carol"
    stored = (gateway.config.data_dir / KEYS_FILE).read_text()
    assert key not in stored and id_.removeprefix("key_") in stored  # the digest only
    assert chat(gateway, key).status_code == 200  # effective at once, a new tenant too

    listed = admin(gateway, "GET", "/admin/tenants").json()["data"]
    carol = next(t for t in listed if t["name"] == "carol")
    assert carol["weight"] == 2.0 and [k["id"] for k in carol["keys"]] == [id_]
    assert key not in json.dumps(listed)

    revoked = admin(gateway, "DELETE", f"/admin/keys/{id_}")
    assert revoked.status_code == 200 and revoked.json()["deleted"] is True
    refused = chat(gateway, key)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert admin(gateway, "DELETE", f"/admin/keys/{id_}").json()["error"]["code"] == "key_not_found"

    for response, status, tenant in (
        (created, "admin_key_created", "carol"),
        (revoked, "admin_key_revoked", "carol"),
    ):
        record = one_record(gateway, response.headers["x-request-id"])
        assert (record["status"], record["tenant"]) == (status, tenant)
        assert record["usage"]["total_tokens"] == 0


def test_every_admin_action_is_a_ledger_record(gateway: GatewayServer) -> None:
    for method, path, status in (
        ("GET", "/admin/tenants", "admin_tenants"),
        ("GET", "/admin/replicas", "admin_replicas"),
        ("DELETE", "/admin/keys/key_0000", "admin_key_revoke_failed"),
    ):
        response = admin(gateway, method, path)
        record = one_record(gateway, response.headers["x-request-id"])
        assert record["status"] == status and record["tenant"] == "@admin"
        assert record["status_code"] == response.status_code


def test_a_config_key_is_revoked_in_the_config(gateway: GatewayServer) -> None:
    alice = next(
        t for t in admin(gateway, "GET", "/admin/tenants").json()["data"] if t["name"] == "alice"
    )
    (config_key,) = [k for k in alice["keys"] if k["source"] == "config"]
    response = admin(gateway, "DELETE", f"/admin/keys/{config_key['id']}")
    assert (
        response.status_code == 400 and "configuration file" in response.json()["error"]["message"]
    )
    assert chat(gateway, "sk-alice").status_code == 200


def test_bad_key_requests(gateway: GatewayServer) -> None:
    for body in ({}, {"tenant": "bad name"}, {"tenant": "x", "weight": 0}, {"tenant": "x", "k": 1}):
        response = admin(gateway, "POST", "/admin/keys", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["type"] == "invalid_request_error"
        record = one_record(gateway, response.headers["x-request-id"])
        assert record["status"] == "admin_key_create_failed" and record["status_code"] == 400


def test_reload_applies_tenants_and_limits_live(gateway: GatewayServer, tmp_path: Path) -> None:
    path = tmp_path / "fairgate.yaml"
    data = sim_config(gateway.config.data_dir).model_dump(mode="json")
    data["tenants"][1]["limits"] = {"requests_per_minute": 1}  # bob
    data["tenants"].append({"name": "dave", "weight": 3.0, "api_keys": ["sk-dave"]})
    path.write_text(yaml.safe_dump(data))
    gateway.runtime.config_path = path
    response = admin(gateway, "POST", "/admin/reload")
    assert response.status_code == 200 and response.json()["needs_restart"] == []
    assert one_record(gateway, response.headers["x-request-id"])["status"] == "admin_reload"
    assert chat(gateway, "sk-dave").status_code == 200
    assert [chat(gateway, "sk-bob").status_code for _ in range(2)] == [200, 429]
    listed = admin(gateway, "GET", "/admin/tenants").json()["data"]
    bob = next(t for t in listed if t["name"] == "bob")
    assert bob["limits"]["requests_per_minute"] == 1
    assert next(t for t in listed if t["name"] == "dave")["weight"] == 3.0
