"""The shared counters behind tenant limits, checked and taken atomically.

Each limit a request is admitted under is counted in one of two ways::

    requests    1           in a per-second window bucket, for 60 s   (requests_per_minute)
    tokens      estimate    in the admission's bucket; at settlement   (tokens_per_minute)
                            moved to the settlement's bucket as the
                            real usage, counted 60 s from then
    concurrent  1           a lease, until settled or 15 minutes pass (max_concurrent)
    spend       est. cost   a lease, until settled; then the real cost (budget)
                            joins the tenant's total for the period

``reserve`` takes a per-tenant lock (PostgreSQL: a transaction-scoped advisory lock; SQLite:
``BEGIN IMMEDIATE``), sums the tenant's live buckets and leases, and takes all of the
request's counts or none. So gateways sharing one database never admit past a limit
together: the lock makes their checks one sequence. Windows roll by the second (a count
leaves 60 to 61 s after it was made), not by clock minutes, so there is no burst of twice the
limit at a minute's edge; and a check sums at most 60 buckets per limit however busy the
tenant. A gateway renews its requests' leases while they run (``renew``), so one that dies
holds its tenants' concurrency and budget for at most ``LEASE_S`` more.

Counters are soft state, so their commits skip the fsync (``synchronous_commit = off``,
SQLite ``synchronous = OFF``): a crash loses at most the last moments of counts, never a
ledger record. Money is decimal text, summed in Python (leases are few: requests in flight),
so it stays exact on both databases. Tables are prefixed ``fairgate_limit_`` to share the
ledger's database.
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
LEASE_S = 120.0  # a lease not renewed for this long is a dead gateway's: it ends
SQLITE_FILENAME = "limits.sqlite3"


class LimitStoreError(Exception):
    """The counter store could not be read or written."""


@dataclass(frozen=True, slots=True)
class Ask:
    """One limit a request must fit under: ``amount`` more, on top of what is held, ≤ ``limit``.
    A lease ends ``expires_in`` from now; a budget's ``period`` (its key) ends at
    ``period_end``."""

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
    tokens: int | None  # real tokens, if tokens were counted
    cost: Decimal | None  # real cost, if a spend lease was taken
    period: str = ""
    tokens_estimate: int = 0  # what admission counted, in the bucket of ``admitted_at``
    admitted_at: float = 0.0


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
        """Take every ask's count, or none and say which limit refused."""

    def settle(self, settlement: Settlement, now: float) -> None: ...

    def renew(self, request_ids: Sequence[str], expires: float) -> None:
        """Extend these requests' leases (they are still running) to ``expires``."""

    def spent(self, tenant: str, period: str) -> Decimal: ...

    def close(self) -> None: ...


WINDOWED = ("requests", "tokens")
_TABLES = (
    """CREATE TABLE IF NOT EXISTS fairgate_limit_windows (
        tenant TEXT NOT NULL, kind TEXT NOT NULL, second BIGINT NOT NULL,
        amount BIGINT NOT NULL, PRIMARY KEY (tenant, kind, second))""",
    """CREATE TABLE IF NOT EXISTS fairgate_limit_leases (
        request_id TEXT NOT NULL, kind TEXT NOT NULL, tenant TEXT NOT NULL,
        amount TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (request_id, kind))""",
    """CREATE INDEX IF NOT EXISTS fairgate_limit_leases_tenant
        ON fairgate_limit_leases (tenant, expires)""",
    """CREATE TABLE IF NOT EXISTS fairgate_limit_spent (
        tenant TEXT NOT NULL, period TEXT NOT NULL, amount TEXT NOT NULL,
        PRIMARY KEY (tenant, period))""",
)
_UPSERT_WINDOW = (
    "INSERT INTO fairgate_limit_windows (tenant, kind, second, amount) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (tenant, kind, second)"
    " DO UPDATE SET amount = fairgate_limit_windows.amount + excluded.amount"
)


class _Counters:
    """The counting, on any DB-API connection inside the tenant's locked transaction; only the
    parameter mark differs between the databases."""

    mark = "?"

    def _run(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cursor = conn.execute(sql.replace("?", self.mark), tuple(params))
        return list(cursor.fetchall()) if cursor.description else []

    def _reserve(
        self, conn: Any, tenant: str, request_id: str, asks: Sequence[Ask], now: float
    ) -> Refusal | None:
        second = int(now)
        self._run(
            conn,
            "DELETE FROM fairgate_limit_windows WHERE tenant = ? AND second <= ?",
            (tenant, second - int(WINDOW_S)),
        )
        self._run(
            conn,
            "DELETE FROM fairgate_limit_leases WHERE tenant = ? AND expires <= ?",
            (tenant, now),
        )
        held = self._held(conn, tenant)
        spend = next((a for a in asks if a.kind == "spend"), None)
        spent = self._spent(conn, tenant, spend.period) if spend else Decimal(0)
        refusal = decide(asks, held, spent, now)
        if refusal is not None:
            return refusal
        for ask in asks:
            if ask.kind in WINDOWED:
                self._run(conn, _UPSERT_WINDOW, (tenant, ask.kind, second, int(ask.amount)))
            else:
                self._run(
                    conn,
                    "INSERT INTO fairgate_limit_leases (request_id, kind, tenant, amount, expires)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (request_id, ask.kind, tenant, str(ask.amount), now + ask.expires_in),
                )
        return None

    def _held(self, conn: Any, tenant: str) -> dict[str, tuple[Decimal, float]]:
        held = {
            str(kind): (Decimal(total), float(first) + WINDOW_S)
            for kind, total, first in self._run(
                conn,
                "SELECT kind, SUM(amount), MIN(second) FROM fairgate_limit_windows"
                " WHERE tenant = ? GROUP BY kind",
                (tenant,),
            )
        }
        for kind, amount, expires in self._run(
            conn,
            "SELECT kind, amount, expires FROM fairgate_limit_leases WHERE tenant = ?",
            (tenant,),
        ):
            total, first = held.get(kind, (Decimal(0), math.inf))
            held[kind] = (total + Decimal(amount), min(first, float(expires)))
        return held

    def _settle(self, conn: Any, s: Settlement, now: float) -> None:
        if s.tokens is not None:
            self._run(
                conn,
                "UPDATE fairgate_limit_windows SET amount = amount - ?"
                " WHERE tenant = ? AND kind = 'tokens' AND second = ?",
                (s.tokens_estimate, s.tenant, int(s.admitted_at)),
            )
            self._run(
                conn,
                "DELETE FROM fairgate_limit_windows"
                " WHERE tenant = ? AND kind = 'tokens' AND second = ? AND amount <= 0",
                (s.tenant, int(s.admitted_at)),
            )
            self._run(conn, _UPSERT_WINDOW, (s.tenant, "tokens", int(now), s.tokens))
        self._run(
            conn,
            "DELETE FROM fairgate_limit_leases WHERE request_id = ? AND kind IN (?, ?)",
            (s.request_id, "concurrent", "spend"),
        )
        if s.cost is not None:
            total = self._spent(conn, s.tenant, s.period) + s.cost
            self._run(
                conn,
                "INSERT INTO fairgate_limit_spent (tenant, period, amount) VALUES (?, ?, ?)"
                " ON CONFLICT (tenant, period) DO UPDATE SET amount = excluded.amount",
                (s.tenant, s.period, str(total)),
            )

    def _renew(self, conn: Any, request_ids: Sequence[str], expires: float) -> None:
        for request_id in request_ids:
            self._run(
                conn,
                "UPDATE fairgate_limit_leases SET expires = ? WHERE request_id = ?",
                (expires, request_id),
            )

    def _spent(self, conn: Any, tenant: str, period: str) -> Decimal:
        rows = self._run(
            conn,
            "SELECT amount FROM fairgate_limit_spent WHERE tenant = ? AND period = ?",
            (tenant, period),
        )
        return Decimal(rows[0][0]) if rows else Decimal(0)


def _lock_key(tenant: str) -> int:
    digest = hashlib.sha256(f"fairgate-limits:{tenant}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLimitStore(_Counters):
    """Counters in PostgreSQL, shared by every gateway on the database; a few connections."""

    mark = "%s"

    def __init__(self, url: str, connections: int = 4) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._pool: queue.Queue[Any] = queue.Queue()
        try:
            with psycopg.connect(url, autocommit=True) as setup:
                setup.execute("SELECT pg_advisory_lock(%s)", (_lock_key("schema"),))
                for statement in _TABLES:
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
            return self._reserve(conn, tenant, request_id, asks, now)

    def settle(self, settlement: Settlement, now: float) -> None:
        with self._transaction(settlement.tenant) as conn:
            self._settle(conn, settlement, now)

    def renew(self, request_ids: Sequence[str], expires: float) -> None:
        with self._transaction("") as conn:  # row updates: no tenant's check needs to wait
            self._renew(conn, request_ids, expires)

    def spent(self, tenant: str, period: str) -> Decimal:
        with self._transaction(tenant) as conn:
            return self._spent(conn, tenant, period)

    def close(self) -> None:
        while not self._pool.empty():
            self._pool.get_nowait().close()


class SQLiteLimitStore(_Counters):
    """Counters in a SQLite file: one gateway, or gateways sharing one data directory."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = OFF")
        for statement in _TABLES:
            self._conn.execute(statement)
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
            return self._reserve(conn, tenant, request_id, asks, now)

    def settle(self, settlement: Settlement, now: float) -> None:
        with self._transaction() as conn:
            self._settle(conn, settlement, now)

    def renew(self, request_ids: Sequence[str], expires: float) -> None:
        with self._transaction() as conn:
            self._renew(conn, request_ids, expires)

    def spent(self, tenant: str, period: str) -> Decimal:
        with self._transaction() as conn:
            return self._spent(conn, tenant, period)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_limit_store(ledger_url: str | None, data_dir: Path) -> LimitStore:
    """Next to the ledger: its PostgreSQL database, else a SQLite file in ``data_dir``."""
    if ledger_url and ledger_url.startswith(("postgresql://", "postgres://")):
        return PostgresLimitStore(ledger_url)
    return SQLiteLimitStore(Path(data_dir) / SQLITE_FILENAME)
