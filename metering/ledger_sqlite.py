"""SQLite storage for the ledger: the default, one file under the data directory.

Durability: WAL journal with ``synchronous=FULL`` fsyncs the WAL at every commit, so a commit
that returned survives a process kill and a power loss alike. The cost, one fsync per commit
(4-9 ms on the development machine's disk), is shared by the ledger's group commit. With
``sync="background"`` commits run under ``NORMAL`` (written to the operating system, so they
survive the process dying) and ``WalSyncer`` fsyncs each one right after, off the committing
thread: a machine crash can lose the commits of the last fsync, a process crash none.

One writer connection (used only by the ledger's current writer, one thread at a time) and one
reader connection behind a lock; ``records`` opens its own connection so a long export neither
blocks nor is blocked by appends (WAL readers see a snapshot).

The file holds the audit store (reasoning text, salts), so it is created readable by its owner
only; SQLite gives the -wal and -shm files the same mode.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fairgate.metering.errors import LedgerError
from fairgate.metering.ledger import ChainHead, StoredRow, where_clause
from fairgate.metering.wal_sync import WalSyncer

SCHEMA_VERSION = "1"
SYNC_MODES = ("commit", "background")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    finished_ts REAL NOT NULL,
    record_hash TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_tenant ON records (tenant, finished_ts);
CREATE TABLE IF NOT EXISTS hidden (
    request_id TEXT PRIMARY KEY,
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    opening TEXT NOT NULL
) WITHOUT ROWID;
"""
# Indexes cost every append a page in the WAL. Time-window exports scan in (chain, seq) order,
# which they need anyway, so finished_ts has no index of its own; tenant exports use theirs.


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


class _Transaction:
    __slots__ = ("_chain", "_conn")

    def __init__(self, conn: sqlite3.Connection, chain: str) -> None:
        self._conn = conn
        self._chain = chain

    def head(self) -> ChainHead | None:
        row = self._conn.execute(
            "SELECT seq, record_hash FROM records WHERE chain = ? ORDER BY seq DESC LIMIT 1",
            (self._chain,),
        ).fetchone()
        return None if row is None else ChainHead(seq=row[0], record_hash=row[1])

    def existing(self, request_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(request_ids), 500):  # stay under SQLite's variable limit
            chunk = list(request_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT request_id FROM records WHERE request_id IN ({marks})", chunk
            )
            found.update(row[0] for row in rows)
        return found

    def insert(self, rows: Sequence[StoredRow]) -> None:
        self._conn.executemany(
            "INSERT INTO records (chain, seq, request_id, tenant, finished_ts, record_hash,"
            " record) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        self._conn.executemany(
            "INSERT INTO hidden (request_id, chain, seq, opening) VALUES (?, ?, ?, ?)",
            [
                (r.request_id, r.chain, r.seq, r.opening_json)
                for r in rows
                if r.opening_json is not None
            ],
        )


class SQLiteStore:
    """``LedgerStore`` on one SQLite file; see the module docstring."""

    def __init__(self, path: Path, *, sync: str = "commit") -> None:
        if sync not in SYNC_MODES:
            raise LedgerError(f"ledger sync {sync!r}: expected one of {', '.join(SYNC_MODES)}")
        self.path = Path(path)
        self.syncer: WalSyncer | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._writer = _connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc
        mode = self._writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        self._writer.execute(f"PRAGMA synchronous = {'FULL' if sync == 'commit' else 'NORMAL'}")
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._writer.execute(statement)
            self._writer.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
            version = self._writer.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()[0]
            self._writer.execute("COMMIT")
        except BaseException:
            self._writer.execute("ROLLBACK")
            raise
        if version != SCHEMA_VERSION:
            raise LedgerError(f"{self.path}: schema version {version}, expected {SCHEMA_VERSION}")
        self._reader = _connect(self.path)
        self._read_lock = threading.Lock()
        if sync == "background":
            self.syncer = WalSyncer(Path(f"{self.path}-wal"))

    @contextmanager
    def transaction(self, chain: str) -> Iterator[_Transaction]:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock before the head is read
        try:
            yield _Transaction(conn, chain)
            conn.execute("COMMIT")
            if self.syncer is not None:
                self.syncer.committed()
        except BaseException:
            if conn.in_transaction:  # also when COMMIT itself failed (a full disk)
                conn.execute("ROLLBACK")
            raise

    def last_row(self, chain: str) -> tuple[str, str] | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT record, record_hash FROM records WHERE chain = ? ORDER BY seq DESC LIMIT 1",
                (chain,),
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def records(
        self, since: float | None, until: float | None, tenant: str | None
    ) -> Iterator[str]:
        where, params = where_clause(since, until, tenant, mark="?")
        conn = _connect(self.path)
        try:
            for (text,) in conn.execute(
                f"SELECT record FROM records{where} ORDER BY chain, seq", params
            ):
                yield text
        finally:
            conn.close()

    def get(self, request_id: str) -> str | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT record FROM records WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def hidden(self, request_id: str) -> str | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT opening FROM hidden WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def count(self) -> int:
        with self._read_lock:
            return int(self._reader.execute("SELECT count(*) FROM records").fetchone()[0])

    def close(self) -> None:
        if self.syncer is not None:
            self.syncer.close()
        with self._read_lock:
            self._reader.close()
        self._writer.close()
