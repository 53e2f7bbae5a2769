"""PostgreSQL storage for the ledger, for several gateway instances sharing one database.

Each gateway instance appends to its own chain (``chain_id``); records of every chain live in
one table, keyed by (chain, seq). An append transaction takes a transaction-scoped advisory lock
on its chain before reading the chain head, so two instances that were given the same chain id
by mistake interleave into one valid chain instead of forking it.

Durability is the server's: with ``synchronous_commit = on`` (the default) COMMIT returns after
the WAL is flushed. Tables are prefixed ``fairgate_ledger_`` to share a database politely.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from fairgate.metering.errors import LedgerError
from fairgate.metering.ledger import ChainHead, StoredRow, where_clause

SCHEMA_VERSION = "1"
_LOCK_NAMESPACE = "fairgate-ledger:"
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS fairgate_ledger_meta (
        key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS fairgate_ledger_records (
        chain TEXT NOT NULL,
        seq BIGINT NOT NULL,
        request_id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        finished_ts DOUBLE PRECISION NOT NULL,
        record_hash TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (chain, seq))""",
    """CREATE INDEX IF NOT EXISTS fairgate_ledger_records_tenant
        ON fairgate_ledger_records (tenant, finished_ts)""",
    """CREATE TABLE IF NOT EXISTS fairgate_ledger_hidden (
        request_id TEXT PRIMARY KEY,
        chain TEXT NOT NULL,
        seq BIGINT NOT NULL,
        opening TEXT NOT NULL)""",
)


class _Transaction:
    __slots__ = ("_chain", "_conn")

    def __init__(self, conn: psycopg.Connection[Any], chain: str) -> None:
        self._conn = conn
        self._chain = chain

    def head(self) -> ChainHead | None:
        row = self._conn.execute(
            "SELECT seq, record_hash FROM fairgate_ledger_records WHERE chain = %s"
            " ORDER BY seq DESC LIMIT 1",
            (self._chain,),
        ).fetchone()
        return None if row is None else ChainHead(seq=int(row[0]), record_hash=str(row[1]))

    def existing(self, request_ids: Sequence[str]) -> set[str]:
        rows = self._conn.execute(
            "SELECT request_id FROM fairgate_ledger_records WHERE request_id = ANY(%s)",
            (list(request_ids),),
        ).fetchall()
        return {str(row[0]) for row in rows}

    def insert(self, rows: Sequence[StoredRow]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO fairgate_ledger_records (chain, seq, request_id, tenant, finished_ts,"
                " record_hash, record) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        r.chain,
                        r.seq,
                        r.request_id,
                        r.tenant,
                        r.finished_ts,
                        r.record_hash,
                        r.record_json,
                    )
                    for r in rows
                ],
            )
            hidden = [
                (r.request_id, r.chain, r.seq, r.opening_json)
                for r in rows
                if r.opening_json is not None
            ]
            if hidden:
                cur.executemany(
                    "INSERT INTO fairgate_ledger_hidden (request_id, chain, seq, opening)"
                    " VALUES (%s, %s, %s, %s)",
                    hidden,
                )


class PostgresStore:
    """``LedgerStore`` on PostgreSQL (psycopg 3); see the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self._writer = psycopg.connect(url, autocommit=True)
            self._reader = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise LedgerError(f"cannot connect to the ledger database: {exc}") from exc
        self._read_lock = threading.Lock()
        with self._writer.transaction():
            # Serialise schema creation between instances starting together.
            self._writer.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (_LOCK_NAMESPACE + "schema",),
            )
            for statement in _SCHEMA:
                self._writer.execute(statement)
            self._writer.execute(
                "INSERT INTO fairgate_ledger_meta (key, value) VALUES ('schema_version', %s)"
                " ON CONFLICT (key) DO NOTHING",
                (SCHEMA_VERSION,),
            )
            row = self._writer.execute(
                "SELECT value FROM fairgate_ledger_meta WHERE key = 'schema_version'"
            ).fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise LedgerError(f"ledger schema version {row and row[0]}, expected {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self, chain: str) -> Iterator[_Transaction]:
        try:
            if self._writer.broken or self._writer.closed:  # e.g. after a server restart
                self._writer = psycopg.connect(self.url, autocommit=True)
            with self._writer.transaction():
                self._writer.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (_LOCK_NAMESPACE + chain,),
                )
                yield _Transaction(self._writer, chain)
        except psycopg.Error as exc:
            raise LedgerError(f"ledger transaction failed: {exc}") from exc

    def last_row(self, chain: str) -> tuple[str, str] | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT record, record_hash FROM fairgate_ledger_records WHERE chain = %s"
                " ORDER BY seq DESC LIMIT 1",
                (chain,),
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def records(
        self, since: float | None, until: float | None, tenant: str | None
    ) -> Iterator[str]:
        where, params = where_clause(since, until, tenant, mark="%s")
        query = f"SELECT record FROM fairgate_ledger_records{where} ORDER BY chain, seq"
        # A server-side cursor in its own connection streams a large export in snapshot order.
        with (
            psycopg.connect(self.url) as conn,
            conn.cursor(name=f"fairgate_export_{uuid.uuid4().hex}") as cur,
        ):
            cur.execute(query, params)
            for (text,) in cur:
                yield str(text)

    def get(self, request_id: str) -> str | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT record FROM fairgate_ledger_records WHERE request_id = %s", (request_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def hidden(self, request_id: str) -> str | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT opening FROM fairgate_ledger_hidden WHERE request_id = %s", (request_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def count(self) -> int:
        with self._read_lock:
            row = self._reader.execute("SELECT count(*) FROM fairgate_ledger_records").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        self._writer.close()
