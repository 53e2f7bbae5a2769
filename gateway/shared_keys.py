"""API keys shared by the gateways on one PostgreSQL ledger.

With a PostgreSQL ledger, keys created through ``POST /admin/keys`` are stored (as their
SHA-256, like the key file) in ``fairgate_api_keys`` in the ledger's database, and every
gateway reads the live ones every ``SYNC_S`` seconds. A revocation is effective at once on
the gateway that made it, and on the others at their next read: within ``SYNC_S``. Keys in
the configuration file and in ``data_dir/api_keys.json`` (``fairgate keys create``) stay
each gateway's own.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fairgate.gateway.auth import StoredKey

SYNC_S = 2.0
_TABLE = """CREATE TABLE IF NOT EXISTS fairgate_api_keys (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, weight DOUBLE PRECISION,
    sha256 TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION)"""


class SharedKeys:
    def __init__(self, url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._conn: Any = psycopg.connect(url, autocommit=True)
        self._conn.execute(_TABLE)
        self._lock = threading.Lock()

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """One statement; a connection the database dropped is replaced once, then retried."""
        with self._lock:
            if self._conn.broken or self._conn.closed:
                self._conn = self._psycopg.connect(self._url, autocommit=True)
            return self._conn.execute(sql, params)

    def add(self, key: StoredKey) -> None:
        self._execute(
            "INSERT INTO fairgate_api_keys (id, tenant, weight, sha256, created_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (key.id, key.tenant, key.weight, key.sha256.hex(), key.created_at),
        )

    def revoke(self, id_: str) -> StoredKey | None:
        row = self._execute(
            "UPDATE fairgate_api_keys SET revoked_at = %s WHERE id = %s"
            " AND revoked_at IS NULL RETURNING tenant, weight, sha256, created_at",
            (time.time(), id_),
        ).fetchone()
        return None if row is None else _stored(row)

    def active(self) -> list[StoredKey]:
        rows = self._execute(
            "SELECT tenant, weight, sha256, created_at FROM fairgate_api_keys"
            " WHERE revoked_at IS NULL ORDER BY created_at, id"
        ).fetchall()
        return [_stored(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _stored(row: Any) -> StoredKey:
    tenant, weight, sha256, created_at = row
    return StoredKey(str(tenant), weight, bytes.fromhex(sha256), float(created_at))


def open_shared_keys(ledger_url: str | None) -> SharedKeys | None:
    if ledger_url and ledger_url.startswith(("postgresql://", "postgres://")):
        return SharedKeys(ledger_url)
    return None
