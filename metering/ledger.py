"""The append-only, hash-chained, signed ledger: one record per request.

``Ledger.append`` is synchronous and thread-safe. It returns only after the record is durably
committed (SQLite: WAL with ``synchronous=FULL``, so the WAL is fsynced at every commit;
PostgreSQL: ``synchronous_commit`` as the server is configured, ``on`` by default), so a client
is never given a receipt for a record a crash could lose. SQLite's ``sync="background"`` narrows
that to crashes of the process: the record is written to the OS before ``append`` returns and
fsynced right after, off the caller's path (``wal_sync``).

Group commit: a signature chains each record to the previous one, so records are built one at a
time, but a commit (an fsync) can carry many. Callers queue their entries; whoever finds no
writer active becomes the writer, takes every queued entry, and in one transaction reads the
chain head, signs and inserts them, and commits; then it wakes the others, whose entries were in
that batch or become the next writer's. A lone caller pays one fsync per append; eight callers
share them. ``append_many`` queues several entries at once: the gateway's ``LedgerWriter``
thread hands over everything that queued while the previous commit ran. The head is read
inside the write transaction (under ``BEGIN IMMEDIATE`` on SQLite, an advisory lock per chain
on PostgreSQL), so two processes on one chain interleave correctly instead of forking it, and
reopening a ledger resumes its chain from the last stored record.

A bad entry (a duplicate request id, a value with no canonical form) fails alone; a failed
commit fails its whole batch and appends nothing.

Storage seam: a ``LedgerStore`` opens write transactions (``LedgerTransaction``: ``head``,
``existing``, ``insert``) and answers reads; ``ledger_sqlite`` and ``ledger_postgres`` implement
it, and the tests use both.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from fairgate.metering.canonical import canonical_json
from fairgate.metering.commitment import Opening
from fairgate.metering.errors import (
    DuplicateRequestError,
    LedgerCorruptError,
    LedgerError,
    MeteringError,
)
from fairgate.metering.pricing import PriceTable
from fairgate.metering.record import (
    GENESIS_HASH,
    LedgerEntry,
    Receipt,
    sign_record,
    unsigned_record,
)
from fairgate.metering.signing import SigningKey

DEFAULT_CHAIN = "default"
SQLITE_FILENAME = "ledger.sqlite3"
_MAX_BATCH = 1024


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    record_hash: str


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One record as stored: its canonical JSON plus the columns reads filter on."""

    chain: str
    seq: int
    request_id: str
    tenant: str
    finished_ts: float  # unix seconds, for range queries; the record itself has RFC 3339
    record_hash: str
    record_json: str
    opening_json: str | None


class LedgerTransaction(Protocol):
    def head(self) -> ChainHead | None:
        """The chain's last record, read under the transaction's write lock."""

    def existing(self, request_ids: Sequence[str]) -> set[str]:
        """Which of these request ids already have a record (in any chain)."""

    def insert(self, rows: Sequence[StoredRow]) -> None: ...


class LedgerStore(Protocol):
    def transaction(self, chain: str) -> AbstractContextManager[LedgerTransaction]:
        """A write transaction on ``chain``; commits durably on exit, rolls back on error."""

    def last_row(self, chain: str) -> tuple[str, str] | None:
        """(record JSON, stored record hash) of the chain's last record."""

    def records(
        self, since: float | None, until: float | None, tenant: str | None
    ) -> Iterator[str]:
        """Record JSON texts ordered by (chain, seq); since inclusive, until exclusive."""

    def get(self, request_id: str) -> str | None: ...

    def hidden(self, request_id: str) -> str | None: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class _Pending:
    __slots__ = ("done", "entry", "error", "receipt")

    def __init__(self, entry: LedgerEntry) -> None:
        self.entry = entry
        self.done = False
        self.receipt: Receipt | None = None
        self.error: Exception | None = None

    def outcome(self) -> Receipt | Exception:
        if self.receipt is not None:
            return self.receipt
        return self.error or LedgerError("append did not complete")


class Ledger:
    """Signs, chains and durably stores one record per request; see the module docstring."""

    def __init__(
        self,
        store: LedgerStore,
        key: SigningKey | None,
        chain_id: str = DEFAULT_CHAIN,
        *,
        pricing: PriceTable | None = None,
    ) -> None:
        if not chain_id:
            raise ValueError("chain_id must be a non-empty string")
        self._store = store
        self.key = key
        self.chain_id = chain_id
        self.pricing = pricing
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False
        self._closed = False
        self._check_head()

    def _check_head(self) -> None:
        last = self._store.last_row(self.chain_id)
        if last is None:
            return
        text, stored_hash = last
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != stored_hash:
            raise LedgerCorruptError(
                f"chain {self.chain_id!r}: the last record does not match its stored hash"
            )

    def append(self, entry: LedgerEntry) -> Receipt:
        """Sign, chain and durably commit ``entry``'s record; returns the client's receipt.

        Raises ``DuplicateRequestError`` when the request id already has a record, and
        ``LedgerError`` when the ledger is closed, read-only, or the commit failed.
        """
        outcome = self.append_many([entry])[0]
        if isinstance(outcome, Receipt):
            return outcome
        raise outcome

    def append_many(self, entries: Sequence[LedgerEntry]) -> list[Receipt | Exception]:
        """``append`` for several entries at once, in order: each one's receipt or the error
        that refused it (a bad entry fails alone). Raises ``LedgerError`` when the ledger is
        closed or read-only."""
        if self.key is None:
            raise LedgerError("this ledger was opened without a signing key (read-only)")
        for entry in entries:  # fail here, not inside someone else's batch
            if not isinstance(entry, LedgerEntry):
                raise TypeError(f"append() takes a LedgerEntry, not {type(entry).__name__}")
        if not entries:
            return []
        pendings = [_Pending(entry) for entry in entries]
        last = pendings[-1]  # batches take the queue's head: ours are done when it is
        with self._cond:
            if self._closed:
                raise LedgerError("ledger is closed")
            self._queue.extend(pendings)
        while not last.done:
            batch = self._take(last)
            if batch:
                self._write(batch)
        return [item.outcome() for item in pendings]

    def _take(self, last: _Pending) -> list[_Pending]:
        """The next batch to write, once no one else is writing; empty when ``last`` is done."""
        with self._cond:
            while not last.done:
                if not self._writing:
                    # Nobody is writing, so our entries are still queued: write the queue.
                    self._writing = True
                    batch = self._queue[:_MAX_BATCH]
                    del self._queue[:_MAX_BATCH]
                    return batch
                self._cond.wait()
        return []

    def _write(self, batch: list[_Pending]) -> None:
        try:
            self._write_batch(batch)
        finally:
            with self._cond:
                for item in batch:
                    if item.receipt is None and item.error is None:  # the writer was interrupted
                        item.error = LedgerError("append interrupted before its commit")
                    item.done = True
                self._writing = False
                self._cond.notify_all()

    def _write_batch(self, batch: list[_Pending]) -> None:
        assert self.key is not None
        key, chain = self.key, self.chain_id
        accepted: list[tuple[_Pending, dict[str, Any]]] = []
        try:
            with self._store.transaction(chain) as txn:
                head = txn.head()
                seq, prev = (head.seq + 1, head.record_hash) if head else (0, GENESIS_HASH)
                duplicates = txn.existing([item.entry.request_id for item in batch])
                rows: list[StoredRow] = []
                for item in batch:
                    entry = item.entry
                    if entry.request_id in duplicates:
                        item.error = DuplicateRequestError(
                            f"request {entry.request_id!r} already has a ledger record"
                        )
                        continue
                    try:
                        row, record = self._build(entry, seq, prev, key)
                    except (MeteringError, ValueError, TypeError) as exc:
                        item.error = exc  # a bad entry fails alone, not its batch
                        continue
                    duplicates.add(entry.request_id)
                    rows.append(row)
                    accepted.append((item, record))
                    seq, prev = seq + 1, row.record_hash
                if rows:
                    txn.insert(rows)
        except Exception as exc:
            error = exc if isinstance(exc, LedgerError) else LedgerError(f"commit failed: {exc}")
            if error is not exc:
                error.__cause__ = exc
            for item, _ in accepted:
                item.error = error
            for item in batch:
                if item.error is None:
                    item.error = error
            return
        for item, record in accepted:
            item.receipt = Receipt.from_record(record)

    def _build(
        self, entry: LedgerEntry, seq: int, prev: str, key: SigningKey
    ) -> tuple[StoredRow, dict[str, Any]]:
        cost = entry.cost
        if cost is None and self.pricing is not None:
            cost = self.pricing.cost(entry.model, entry.usage)
        body = unsigned_record(
            entry, chain=self.chain_id, seq=seq, prev_hash=prev, key_id=key.key_id
        )
        if cost is not None:
            body["cost"] = cost.to_dict()
        record = sign_record(body, key)
        text = canonical_json(record)
        opening = None
        if entry.opening is not None:
            opening = json.dumps(entry.opening.to_dict(), ensure_ascii=False, separators=(",", ":"))
        row = StoredRow(
            chain=self.chain_id,
            seq=seq,
            request_id=entry.request_id,
            tenant=entry.tenant,
            finished_ts=float(entry.finished_at),
            record_hash=hashlib.sha256(text).hexdigest(),
            record_json=text.decode("utf-8"),
            opening_json=opening,
        )
        return row, record

    def records(
        self, since: float | None = None, until: float | None = None, tenant: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Signed records of every chain in the store, by (chain, seq).

        ``since``/``until`` are unix seconds on ``finished_at`` (since inclusive, until exclusive).
        """
        for text in self._store.records(since, until, tenant):
            yield json.loads(text)

    def get(self, request_id: str) -> dict[str, Any] | None:
        text = self._store.get(request_id)
        return None if text is None else json.loads(text)

    def hidden(self, request_id: str) -> Opening | None:
        """The audit store's opening (salt, token ids, block texts); never exported."""
        text = self._store.hidden(request_id)
        return None if text is None else Opening.from_dict(json.loads(text))

    def count(self) -> int:
        return self._store.count()

    def close(self) -> None:
        """Wait for the batch being written, then close; later appends raise ``LedgerError``."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            while self._writing or self._queue:
                self._cond.wait()
        self._store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def where_clause(
    since: float | None, until: float | None, tenant: str | None, *, mark: str
) -> tuple[str, list[object]]:
    """The SQL filter of ``records()``, with the backend's parameter ``mark``."""
    clauses: list[str] = []
    params: list[object] = []
    for column, op, value in (
        ("finished_ts", ">=", since),
        ("finished_ts", "<", until),
        ("tenant", "=", tenant),
    ):
        if value is not None:
            clauses.append(f"{column} {op} {mark}")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def open_ledger(
    url: str | None,
    data_dir: Path,
    key: SigningKey | None,
    chain_id: str = DEFAULT_CHAIN,
    *,
    pricing: PriceTable | None = None,
    sync: str = "commit",
) -> Ledger:
    """Open (creating if needed) the ledger at ``url``.

    * ``None``: SQLite at ``data_dir/ledger.sqlite3``;
    * ``sqlite:///PATH``: SQLite at PATH, absolute (``sqlite:////var/lib/l.db``) or relative to
      ``data_dir``;
    * ``postgresql://...`` or ``postgres://...``: PostgreSQL (psycopg 3); give each gateway
      instance its own ``chain_id``.

    ``key`` ``None`` opens the ledger read-only (export, verify, audit). ``sync`` (SQLite):
    ``commit`` fsyncs before ``append`` returns; ``background`` returns once the record is
    written to the OS and fsyncs right after (see ``ledger_sqlite``). PostgreSQL commits as
    its server's ``synchronous_commit`` says, whatever ``sync`` is.
    """
    data_dir = Path(data_dir)
    store: LedgerStore
    if url is None or url.startswith("sqlite:"):
        from fairgate.metering.ledger_sqlite import SQLiteStore

        if url is None:
            path = data_dir / SQLITE_FILENAME
        elif url.startswith("sqlite:///"):
            path = data_dir / url.removeprefix("sqlite:///")  # an absolute path replaces data_dir
        else:
            raise LedgerError(f"ledger url {url!r}: expected sqlite:///PATH")
        store = SQLiteStore(path, sync=sync)
    elif url.startswith(("postgresql://", "postgres://")):
        from fairgate.metering.ledger_postgres import PostgresStore

        store = PostgresStore(url)
    else:
        raise LedgerError(f"ledger url {url!r}: expected sqlite:///PATH or postgresql://...")
    try:
        return Ledger(store, key, chain_id, pricing=pricing)
    except BaseException:
        store.close()
        raise
