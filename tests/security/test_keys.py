"""API keys at rest and in comparison: only digests are stored (config keys are never written,
issued keys are kept as SHA-256), nothing the gateway writes holds a key, and every check goes
through hmac.compare_digest against every stored digest, whichever key matches."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fairgate.gateway.auth import digest
from tests.security.conftest import AUDIT_KEY, call, chat
from tests.support.gateway_server import GatewayServer

pytestmark = pytest.mark.timeout(60)


def _every_byte_written(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_no_key_is_stored_or_logged_in_plain(
    gateway: GatewayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    issued = call(gateway, "POST", "/admin/keys", "admin-secret", json={"tenant": "carol"})
    assert issued.status_code == 200, issued.text
    new_key = issued.json()["key"]
    assert chat(gateway, new_key).status_code == 200
    assert chat(gateway, "sk-alice").status_code == 200
    assert chat(gateway, "sk-wrong-guess").status_code == 401
    written = _every_byte_written(gateway.config.data_dir)
    logged = "\n".join(str(r.__dict__) for r in caplog.records)
    for key in (new_key, "sk-alice", "sk-bob", "sk-wrong-guess", "admin-secret", AUDIT_KEY):
        assert key.encode() not in written, f"{key!r} is in the data directory"
        assert key not in logged, f"{key!r} is in the log"
    assert digest(new_key).hex().encode() in written  # what is kept: the digest


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    calls: list[tuple[Any, Any]] = []
    real: Callable[[Any, Any], bool] = hmac.compare_digest

    def counted(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counted)
    return calls


@pytest.mark.parametrize("key", ["sk-alice", "sk-bob", "sk-nobody"])
def test_tenant_keys_compare_in_constant_time_against_every_digest(
    gateway: GatewayServer, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    stored = len(gateway.runtime.keyring)
    calls = _counting(monkeypatch)
    call(gateway, "GET", "/v1/models", key)
    presented = digest(key)
    tenant_checks = [c for c in calls if presented in c]
    # No early exit: the first key, the last one and no key at all cost the same comparisons.
    assert len(tenant_checks) == stored


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/admin/replicas", "admin-secret"),
        ("/admin/replicas", "nope"),
        ("/v1/audit/challenge", "x"),
    ],
)
def test_admin_and_audit_keys_compare_in_constant_time(
    gateway: GatewayServer, monkeypatch: pytest.MonkeyPatch, path: str, key: str
) -> None:
    calls = _counting(monkeypatch)
    method = "POST" if "audit" in path else "GET"
    call(gateway, method, path, key, json={} if method == "POST" else None)
    assert any(key.encode() in c for c in calls), "the key was not compared with compare_digest"
