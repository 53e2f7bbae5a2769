"""API keys → tenants. Keys are kept only as SHA-256 digests and compared in constant time.

API keys are 256-bit random strings, so a plain SHA-256 digest is enough: there is nothing
to brute-force that a slow password hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

KEY_PREFIX = "sk-fg-"
KEYS_FILE = "api_keys.json"


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_id(sha256: bytes) -> str:
    """A key's public name: a prefix of its digest, so keys stored before ids existed have one
    too. It identifies the key to an operator; it cannot be used to authenticate."""
    return "key_" + sha256.hex()[:16]


@dataclass(slots=True, frozen=True)
class Tenant:
    name: str
    weight: float


@dataclass(slots=True, frozen=True)
class StoredKey:
    tenant: str
    weight: float | None
    sha256: bytes
    created_at: float

    @property
    def id(self) -> str:
        return key_id(self.sha256)


class TenantKeys:
    """Maps a presented bearer key to its tenant.

    Every stored digest is compared on every lookup (no early exit), so the time taken does
    not depend on which key, if any, matched.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[bytes, str]] = []

    def add(self, sha256: bytes, tenant: str) -> None:
        self._entries.append((sha256, tenant))

    def remove(self, sha256: bytes) -> None:
        self._entries = [(stored, t) for stored, t in self._entries if stored != sha256]

    def lookup(self, key: str) -> str | None:
        presented = digest(key)
        found: str | None = None
        for stored, tenant in self._entries:
            if hmac.compare_digest(stored, presented):
                found = tenant
        return found

    def __len__(self) -> int:
        return len(self._entries)


class KeyStore:
    """Keys created with ``fairgate keys create``, in ``data_dir/api_keys.json``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / KEYS_FILE

    def load(self) -> list[StoredKey]:
        if not self.path.exists():
            return []
        rows = json.loads(self.path.read_text(encoding="utf-8"))
        return [
            StoredKey(
                tenant=row["tenant"],
                weight=row.get("weight"),
                sha256=bytes.fromhex(row["sha256"]),
                created_at=float(row["created_at"]),
            )
            for row in rows
        ]

    def create(self, tenant: str, weight: float | None = None) -> str:
        return self.issue(tenant, weight)[0]

    def issue(self, tenant: str, weight: float | None = None) -> tuple[str, StoredKey]:
        """A new key (shown to its owner once) and what is stored of it: only its digest."""
        key, stored = new_key(tenant, weight)
        self._save([*self.load(), stored])
        return key, stored

    def revoke(self, id_: str) -> StoredKey | None:
        """Delete the key named ``id_``; ``None`` when there is none."""
        keys = self.load()
        found = next((k for k in keys if hmac.compare_digest(k.id, id_)), None)
        if found is not None:
            self._save([k for k in keys if k is not found])
        return found

    def _save(self, keys: list[StoredKey]) -> None:
        self._write(
            [
                {
                    "tenant": k.tenant,
                    "weight": k.weight,
                    "sha256": k.sha256.hex(),
                    "created_at": k.created_at,
                }
                for k in keys
            ]
        )

    def _write(self, rows: list[dict[str, object]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1)
        os.replace(tmp, self.path)


def new_key(tenant: str, weight: float | None = None) -> tuple[str, StoredKey]:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, StoredKey(tenant, weight, digest(key), time.time())


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
