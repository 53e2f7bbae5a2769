"""What one tenant can reach of another's: nothing. Receipts come only with a tenant's own
answers, the audit path (openings) takes no tenant key at all, the admin endpoints refuse
tenant keys, and a client cannot choose the request id its record is filed under."""

from __future__ import annotations

import os

import pytest

from fairgate.metering.audit import Challenge
from tests.security.conftest import AUDIT_KEY, HIDDEN, call, chat
from tests.support.gateway_server import GatewayServer

pytestmark = pytest.mark.timeout(60)


def _alice_request(gateway: GatewayServer) -> str:
    response = chat(gateway, "sk-alice")
    assert response.status_code == 200
    return str(response.json()["receipt"]["request_id"])


@pytest.mark.parametrize("key", ["sk-bob", "sk-alice"])
@pytest.mark.parametrize("reveal", ["embeddings", "full"])
def test_no_tenant_key_opens_an_audit(gateway: GatewayServer, key: str, reveal: str) -> None:
    request_id = _alice_request(gateway)
    body = {**Challenge(request_id, os.urandom(16)).to_dict(), "reveal": reveal}
    response = call(gateway, "POST", "/v1/audit/challenge", key, json=body)
    assert response.status_code == 403
    assert "openings" not in response.text and "blocks" not in response.text
    assert not HIDDEN.search(response.text)


def test_the_audit_key_opens_only_the_record_asked_for(gateway: GatewayServer) -> None:
    mine, other = _alice_request(gateway), _alice_request(gateway)
    body = Challenge(mine, os.urandom(16)).to_dict()
    response = call(gateway, "POST", "/v1/audit/challenge", AUDIT_KEY, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["record"]["request_id"] == mine
    assert other not in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/replicas"),
        ("GET", "/admin/tenants"),
        ("POST", "/admin/keys"),
        ("DELETE", "/admin/keys/key_0123456789abcdef"),
        ("POST", "/admin/reload"),
    ],
)
def test_tenant_keys_cannot_use_the_admin_endpoints(
    gateway: GatewayServer, method: str, path: str
) -> None:
    body = {"tenant": "alice"} if method == "POST" else None
    response = call(gateway, method, path, "sk-bob", json=body)
    assert response.status_code == 403, response.text
    assert "sk-" not in response.text and "alice" not in response.text


def test_a_client_cannot_choose_its_request_id(gateway: GatewayServer) -> None:
    taken = _alice_request(gateway)
    response = chat(gateway, "sk-bob", headers={"x-request-id": taken})
    assert response.status_code == 200
    assert response.headers["x-request-id"] != taken
    assert response.json()["receipt"]["request_id"] != taken
    records = [r for r in gateway.records() if r["request_id"] == taken]
    assert len(records) == 1 and records[0]["tenant"] == "alice"


def test_nothing_a_tenant_can_read_holds_another_tenants_receipt(gateway: GatewayServer) -> None:
    receipt = chat(gateway, "sk-alice").json()["receipt"]
    for path in ("/v1/models", "/metrics", "/healthz", "/readyz", "/.well-known/fairgate-keys"):
        response = call(gateway, "GET", path, "sk-bob")
        assert receipt["request_id"] not in response.text, path
        assert receipt["signature"] not in response.text, path
