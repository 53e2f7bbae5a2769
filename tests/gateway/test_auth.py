"""API keys: stored only hashed, found in constant time, created once by the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from fairgate.gateway.auth import KeyStore, TenantKeys, bearer_token, digest
from fairgate.gateway.config import parse_config
from fairgate.gateway.runtime import load_tenants


def test_keyring_maps_keys_to_tenants() -> None:
    ring = TenantKeys()
    ring.add(digest("sk-a"), "alice")
    ring.add(digest("sk-b"), "bob")
    assert ring.lookup("sk-a") == "alice"
    assert ring.lookup("sk-b") == "bob"
    assert ring.lookup("sk-c") is None
    assert ring.lookup("") is None


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer sk-1") == "sk-1"
    assert bearer_token("bearer   sk-1 ") == "sk-1"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_created_keys_are_stored_hashed(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    key = store.create("carol", 2.0)
    assert key.startswith("sk-fg-") and len(key) > 40
    text = store.path.read_text()
    assert key not in text and digest(key).hex() in text
    assert (store.path.stat().st_mode & 0o777) == 0o600
    config = parse_config(
        {"data_dir": str(tmp_path), "tenants": [{"name": "alice", "api_keys": ["sk-alice"]}]}
    )
    ring, tenants = load_tenants(config)
    assert ring.lookup(key) == "carol" and tenants["carol"].weight == 2.0
    assert ring.lookup("sk-alice") == "alice"


def test_keys_create_cli(tmp_path: Path) -> None:
    path = tmp_path / "fairgate.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fairgate.gateway.cli",
            "keys",
            "create",
            "--tenant",
            "dave",
            "--config",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("sk-fg-")
    assert key not in result.stderr
    ring, _ = load_tenants(parse_config({"data_dir": str(tmp_path / "data")}))
    assert ring.lookup(key) == "dave"
