"""The shared counters behind tenant limits: holds in a table, checked and taken atomically.

A *hold* is one request's claim on one limit::

    requests    1            counted for 60 s from admission        (requests_per_minute)
    tokens      estimate     re-counted for 60 s from settlement     (tokens_per_minute)
                             with the real usage
    concurrent  1            until settled, or its lease runs out    (max_concurrent)
    spend       est. cost    until settled; then the real cost joins (budget)
                             the tenant's total for the period

``reserve`` takes a per-tenant lock (PostgreSQL: a transaction-scoped advisory lock; SQLite:
``BEGIN IMMEDIATE``), sums the tenant's live holds, and inserts all of the request's holds or
none. So gateways sharing one database never admit past a limit together: the lock makes
their checks one sequence. Windows are rolling (a hold leaves 60 s after it was counted), not
clock minutes, so there is no burst of twice the limit at a minute's edge. A gateway that dies
leaves its concurrency and spend holds behind until their lease ends (``LEASE_S``).

Counters are soft state, so their commits skip the fsync (``synchronous_commit = off``,
SQLite ``synchronous = OFF``): a crash loses at most the last moments of counts, never a
ledger record. Tables are prefixed ``fairgate_limit_`` to share the ledger's database.
"""

from __future__ import annotations

import hashlib
import math
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

WINDOW_S = 60.0
LEASE_S = 900.0  # longer than any request may run (queue + stall timeouts + generation)
SQLITE_FILENAME = "limits.sqlite3"


class LimitStoreError(Exception):
    """The counter store could not be read or written."""


@dataclass(frozen=True, slots=True)
class Ask:
    """One limit a request must fit under: ``amount`` more, on top of what is held, ≤ ``limit``.
    ``spent`` is already settled in this period (budgets), ``period_end`` when it resets."""

    kind: str
    amount: Decimal
    limit: Decimal
    expires_in: float
    period: str = ""
    period_end: float = 0.0


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: str
    used: Decimal
    limit: Decimal
    retry_after: int


@dataclass(frozen=True, slots=True)
class Settlement:
    request_id: str
    tenant: str
    tokens: int | None  # real tokens, if a tokens hold was taken
    cost: Decimal | None  # real cost, if a spend hold was taken
    period: str = ""


def decide(
    asks: Sequence[Ask], held: dict[str, tuple[Decimal, float]], spent: Decimal, now: float
) -> Refusal | None:
    """The first ask that does not fit. ``held``: kind → (sum of live holds, earliest expiry)."""
    for ask in asks:
        used, first_expiry = held.get(ask.kind, (Decimal(0), now))
        if ask.kind == "spend":
            used += spent
        # A lone request above a token limit still runs (else it never could): within one
        # request of the limit. Money is never spent past a budget.
        alone = used == 0 and ask.kind == "tokens"
        if used + ask.amount <= ask.limit or alone:
            continue
        if ask.kind == "spend":
            wait = ask.period_end - now
        elif ask.kind == "concurrent":
            wait = 1.0
        else:
            wait = first_expiry - now
        return Refusal(ask.kind, used, ask.limit, max(1, math.ceil(wait)))
    return None


class LimitStore(Protocol):
    def reserve(
        self, tenant: str, request_id: str, asks: Sequence[Ask], now: float
    ) -> Refusal | None:
        """Take every ask's hold, or none and say which limit refused."""

    def settle(self, settlement: Settlement, now: float) -> None: ...

    def spent(self, tenant: str, period: str) -> Decimal: ...

    def close(self) -> None: ...


_PG_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS fairgate_limit_holds (
        request_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        amount NUMERIC NOT NULL,
        expires DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (request_id, kind))""",
    """CREATE INDEX IF NOT EXISTS fairgate_limit_holds_tenant
        ON fairgate_limit_holds (tenant, expires)""",
    """CREATE TABLE IF NOT EXISTS fairgate_limit_spend (
        tenant TEXT NOT NULL,
        period TEXT NOT NULL,
        amount NUMERIC NOT NULL,
        PRIMARY KEY (tenant, period))""",
)


def _lock_key(tenant: str) -> int:
    digest = hashlib.sha256(f"fairgate-limits:{tenant}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLimitStore:
    """Holds in PostgreSQL, shared by every gateway on the database; a few connections."""

    def __init__(self, url: str, connections: int = 4) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._pool: queue.Queue[Any] = queue.Queue()
        try:
            with psycopg.connect(url, autocommit=True) as setup:
                setup.execute("SELECT pg_advisory_lock(%s)", (_lock_key("schema"),))
                for statement in _PG_SCHEMA:
                    setup.execute(statement)
            for _ in range(connections):
                self._pool.put(psycopg.connect(url, autocommit=True))
        except psycopg.Error as error:
            self.close()
            raise LimitStoreError(f"cannot open the limit store: {error}") from None

    @contextmanager
    def _transaction(self, tenant: str) -> Iterator[Any]:
        conn = self._pool.get()
        try:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(tenant),))
                yield conn
        except self._psycopg.Error as error:
            raise LimitStoreError(f"limit store: {error}") from None
        finally:
            self._pool.put(conn if not (conn.broken or conn.closed) else self._reconnect(conn))

    def _reconnect(self, broken: Any) -> Any:
        broken.close()
        try:
            return self._psycopg.connect(self._url, autocommit=True)
        except self._psycopg.Error:
            return broken  # still down: the next use fails and tries again

    def reserve(
        self, tenant: str, request_id: str, asks: Sequence[Ask], now: float
    ) -> Refusal | None:
        with self._transaction(tenant) as conn:
            conn.execute(
                "DELETE FROM fairgate_limit_holds WHERE tenant = %s AND expires <= %s",
                (tenant, now),
            )
            rows = conn.execute(
                "SELECT kind, SUM(amount), MIN(expires) FROM fairgate_limit_holds"
                " WHERE tenant = %s GROUP BY kind",
                (tenant,),
            ).fetchall()
            held = {str(k): (Decimal(s), float(e)) for k, s, e in rows}
            spend = next((a for a in asks if a.kind == "spend"), None)
            spent = self._spent(conn, tenant, spend.period) if spend else Decimal(0)
            refusal = decide(asks, held, spent, now)
            if refusal is None:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO fairgate_limit_holds (request_id, kind, tenant, amount,"
                        " expires) VALUES (%s, %s, %s, %s, %s)",
                        [(request_id, a.kind, tenant, a.amount, now + a.expires_in) for a in asks],
                    )
            return refusal

    def settle(self, settlement: Settlement, now: float) -> None:
        s = settlement
        with self._transaction(s.tenant) as conn:
            if s.tokens is not None:
                conn.execute(
                    "UPDATE fairgate_limit_holds SET amount = %s, expires = %s"
                    " WHERE request_id = %s AND kind = 'tokens'",
                    (s.tokens, now + WINDOW_S, s.request_id),
                )
            conn.execute(
                "DELETE FROM fairgate_limit_holds WHERE request_id = %s"
                " AND kind IN ('concurrent', 'spend')",
                (s.request_id,),
            )
            if s.cost is not None:
                conn.execute(
                    "INSERT INTO fairgate_limit_spend (tenant, period, amount)"
                    " VALUES (%s, %s, %s) ON CONFLICT (tenant, period)"
                    " DO UPDATE SET amount = fairgate_limit_spend.amount + EXCLUDED.amount",
                    (s.tenant, s.period, s.cost),
                )

    def spent(self, tenant: str, period: str) -> Decimal:
        with self._transaction(tenant) as conn:
            return self._spent(conn, tenant, period)

    @staticmethod
    def _spent(conn: Any, tenant: str, period: str) -> Decimal:
        row = conn.execute(
            "SELECT amount FROM fairgate_limit_spend WHERE tenant = %s AND period = %s",
            (tenant, period),
        ).fetchone()
        return Decimal(row[0]) if row else Decimal(0)

    def close(self) -> None:
        while not self._pool.empty():
            self._pool.get_nowait().close()


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS holds (
    request_id TEXT NOT NULL, kind TEXT NOT NULL, tenant TEXT NOT NULL,
    amount TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (request_id, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_tenant ON holds (tenant, expires);
CREATE TABLE IF NOT EXISTS spend (
    tenant TEXT NOT NULL, period TEXT NOT NULL, amount TEXT NOT NULL,
    PRIMARY KEY (tenant, period)
) WITHOUT ROWID;
"""


class SQLiteLimitStore:
    """Holds in a SQLite file: one gateway, or gateways sharing one data directory. Amounts are
    decimal text, summed in Python, so money stays exact."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = OFF")
        self._conn.executescript(_SQLITE_SCHEMA)
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as error:
                conn.execute("ROLLBACK")
                if isinstance(error, sqlite3.Error):
                    raise LimitStoreError(f"limit store: {error}") from None
                raise

    def reserve(
        self, tenant: str, request_id: str, asks: Sequence[Ask], now: float
    ) -> Refusal | None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM holds WHERE tenant = ? AND expires <= ?", (tenant, now))
            held: dict[str, tuple[Decimal, float]] = {}
            for kind, amount, expires in conn.execute(
                "SELECT kind, amount, expires FROM holds WHERE tenant = ?", (tenant,)
            ):
                total, first = held.get(kind, (Decimal(0), math.inf))
                held[kind] = (total + Decimal(amount), min(first, expires))
            spend = next((a for a in asks if a.kind == "spend"), None)
            spent = self._spent(conn, tenant, spend.period) if spend else Decimal(0)
            refusal = decide(asks, held, spent, now)
            if refusal is None:
                conn.executemany(
                    "INSERT INTO holds (request_id, kind, tenant, amount, expires)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(request_id, a.kind, tenant, str(a.amount), now + a.expires_in) for a in asks],
                )
            return refusal

    def settle(self, settlement: Settlement, now: float) -> None:
        s = settlement
        with self._transaction() as conn:
            if s.tokens is not None:
                conn.execute(
                    "UPDATE holds SET amount = ?, expires = ? WHERE request_id = ? AND kind = ?",
                    (str(s.tokens), now + WINDOW_S, s.request_id, "tokens"),
                )
            conn.execute(
                "DELETE FROM holds WHERE request_id = ? AND kind IN ('concurrent', 'spend')",
                (s.request_id,),
            )
            if s.cost is not None:
                total = self._spent(conn, s.tenant, s.period) + s.cost
                conn.execute(
                    "INSERT OR REPLACE INTO spend (tenant, period, amount) VALUES (?, ?, ?)",
                    (s.tenant, s.period, str(total)),
                )

    def spent(self, tenant: str, period: str) -> Decimal:
        with self._transaction() as conn:
            return self._spent(conn, tenant, period)

    @staticmethod
    def _spent(conn: sqlite3.Connection, tenant: str, period: str) -> Decimal:
        row = conn.execute(
            "SELECT amount FROM spend WHERE tenant = ? AND period = ?", (tenant, period)
        ).fetchone()
        return Decimal(row[0]) if row else Decimal(0)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_limit_store(ledger_url: str | None, data_dir: Path) -> LimitStore:
    """Next to the ledger: its PostgreSQL database, else a SQLite file in ``data_dir``."""
    if ledger_url and ledger_url.startswith(("postgresql://", "postgres://")):
        return PostgresLimitStore(ledger_url)
    return SQLiteLimitStore(Path(data_dir) / SQLITE_FILENAME)
