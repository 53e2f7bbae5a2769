"""Merge the fairgate chart's Secret into its ConfigMap's configuration (init container).

    python merge-config.py CONFIG SECRET_DIR OUT [--ledger sqlite|postgresql]

CONFIG is the configuration without secrets; SECRET_DIR holds the Secret's keys as files:
``admin-key``, ``audit-key``, ``tenant-keys.yaml`` (tenant name -> list of API keys),
``ledger-url`` and ``signing-key.pem``, each optional except that ``--ledger postgresql`` needs
``ledger-url`` and ``signing-key.pem`` (an existing Secret may lack them: say so before the
gateway starts). OUT is written readable by its owner only.
"""

import os
import sys
from pathlib import Path

import yaml


def read(directory: Path, name: str) -> str | None:
    path = directory / name
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def merge(config: dict, secrets: Path, ledger: str = "sqlite") -> dict:
    admin_key = read(secrets, "admin-key")
    if admin_key:
        config["admin_key"] = admin_key
    audit_key = read(secrets, "audit-key")
    if audit_key:
        config["audit_key"] = audit_key
    if ledger == "postgresql":
        ledger_url = read(secrets, "ledger-url")
        for name, value in (("ledger-url", ledger_url), ("signing-key.pem", None)):
            if not (value or read(secrets, name)):
                raise SystemExit(f"ledger.backend=postgresql: the Secret has no {name} ({secrets})")
        config.setdefault("ledger", {})["url"] = ledger_url
    keys = yaml.safe_load(read(secrets, "tenant-keys.yaml") or "{}") or {}
    if not isinstance(keys, dict):
        raise SystemExit("tenant-keys.yaml: expected a mapping of tenant name to API keys")
    tenants = config.setdefault("tenants", [])
    known = {tenant["name"] for tenant in tenants}
    for tenant in tenants:
        tenant["api_keys"] = [str(k) for k in keys.get(tenant["name"]) or []]
    for name, tenant_keys in keys.items():
        if name not in known:
            tenants.append({"name": name, "weight": 1.0, "api_keys": [str(k) for k in tenant_keys]})
    return config


def main(argv: list[str]) -> None:
    config_path, secrets, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    ledger = argv[4] if argv[3:4] == ["--ledger"] and len(argv) > 4 else "sqlite"
    if ledger not in ("sqlite", "postgresql"):
        raise SystemExit(f"--ledger {ledger}: expected sqlite or postgresql")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    text = yaml.safe_dump(merge(config, secrets, ledger), sort_keys=False)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
