"""The SQLite ledger: chaining, durability, group commit, resume, crash safety."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fairgate.metering.errors import (
    CanonicalJSONError,
    DuplicateRequestError,
    LedgerCorruptError,
    LedgerError,
)
from fairgate.metering.ledger import Ledger, LedgerTransaction, open_ledger
from fairgate.metering.ledger_sqlite import SQLiteStore
from fairgate.metering.pricing import PriceTable
from fairgate.metering.record import GENESIS_HASH, record_hash
from fairgate.metering.signing import SigningKey
from fairgate.metering.verify import verify_export

REPO = Path(__file__).resolve().parents[2]


def test_append_chains_signs_and_returns_a_receipt(
    sqlite_ledger: Ledger, helpers: Any, signing_key: SigningKey
) -> None:
    receipts = [sqlite_ledger.append(helpers.make_entry(i, reasoning=i)) for i in range(5)]
    assert [r.seq for r in receipts] == [0, 1, 2, 3, 4]
    records = list(sqlite_ledger.records())
    assert records[0]["prev_hash"] == GENESIS_HASH
    for previous, record in itertools.pairwise(records):
        assert record["prev_hash"] == record_hash(previous)
    for receipt, record in zip(receipts, records, strict=True):
        assert receipt.signature == record["signature"]
        assert receipt.root == record["commitment"]["root"]
        assert receipt.leaves == record["commitment"]["leaves"]
        assert receipt.key_id == signing_key.key_id
    assert sqlite_ledger.count() == 5
    assert sqlite_ledger.get("req-3") == records[3]
    assert sqlite_ledger.get("nope") is None


def test_hidden_store_keeps_the_opening(sqlite_ledger: Ledger, helpers: Any) -> None:
    entry = helpers.make_entry(1, reasoning=7)
    receipt = sqlite_ledger.append(entry)
    opening = sqlite_ledger.hidden("req-1")
    assert opening == entry.opening
    assert opening is not None and opening.commitment().root == receipt.root
    sqlite_ledger.append(helpers.make_entry(2))
    assert sqlite_ledger.hidden("req-2") is None
    # reasoning text never in the record (it holds spaces, which no hash or signature does)
    assert " " in opening.text
    assert opening.text not in str(sqlite_ledger.get("req-1"))


def test_records_filters(sqlite_ledger: Ledger, helpers: Any) -> None:
    helpers.fill(sqlite_ledger, 10)
    t0 = helpers.T0
    assert [r["seq"] for r in sqlite_ledger.records(since=t0 + 3, until=t0 + 6)] == [3, 4, 5]
    assert [r["seq"] for r in sqlite_ledger.records(tenant="globex")] == [1, 3, 5, 7, 9]
    assert [r["seq"] for r in sqlite_ledger.records(since=t0 + 8, tenant="acme")] == [8]


def test_duplicate_request_id_is_refused(sqlite_ledger: Ledger, helpers: Any) -> None:
    sqlite_ledger.append(helpers.make_entry(1))
    with pytest.raises(DuplicateRequestError):
        sqlite_ledger.append(helpers.make_entry(1))
    assert sqlite_ledger.count() == 1
    assert sqlite_ledger.append(helpers.make_entry(2)).seq == 1  # no seq was consumed


def test_reopen_resumes_the_chain(tmp_path: Path, helpers: Any, signing_key: SigningKey) -> None:
    with open_ledger(None, tmp_path, signing_key) as ledger:
        helpers.fill(ledger, 4)
    with open_ledger(None, tmp_path, signing_key) as ledger:
        assert ledger.append(helpers.make_entry(4)).seq == 4
        lines = helpers.export_lines(ledger)
    assert verify_export(lines, [signing_key.public_key]).ok


def test_pricing_fills_in_the_cost(tmp_path: Path, helpers: Any, signing_key: SigningKey) -> None:
    pricing = PriceTable.from_config({"m1": {"prompt": 1, "completion": 2}})
    with open_ledger(None, tmp_path, signing_key, pricing=pricing) as ledger:
        ledger.append(helpers.make_entry(1, reasoning=2))
        ledger.append(replace(helpers.make_entry(2), model="unpriced"))
        priced, unpriced = ledger.records()
    # (15 uncached + 5 cached) x 1 + (10 visible + 2 reasoning) x 2, per million tokens
    assert priced["cost"]["total"] == "0.000044000000"
    assert unpriced["cost"] is None


def test_eight_threads_group_commit_into_one_valid_chain(
    sqlite_ledger: Ledger, helpers: Any, signing_key: SigningKey
) -> None:
    receipts: list[Any] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        for i in range(60):
            receipt = sqlite_ledger.append(helpers.make_entry(t * 1000 + i, reasoning=i % 3))
            with lock:
                receipts.append(receipt)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.seq for r in receipts) == list(range(480))
    report = verify_export(helpers.export_lines(sqlite_ledger), [signing_key.public_key])
    assert report.ok and report.records == 480
    for receipt in receipts[::37]:
        assert sqlite_ledger.get(receipt.request_id)["seq"] == receipt.seq  # type: ignore[index]


def test_a_bad_entry_fails_alone(sqlite_ledger: Ledger, helpers: Any) -> None:
    bad = replace(helpers.make_entry(1), tenant="\ud800")  # no UTF-8 form
    with pytest.raises(CanonicalJSONError):
        sqlite_ledger.append(bad)
    assert sqlite_ledger.append(helpers.make_entry(2)).seq == 0


class FlakyStore(SQLiteStore):
    """A SQLite store whose next insert fails, as a full disk would."""

    fail_next = False

    @contextmanager
    def transaction(self, chain: str) -> Iterator[Any]:
        with super().transaction(chain) as txn:
            yield _Flaky(txn, self)


class _Flaky:
    def __init__(self, txn: LedgerTransaction, store: FlakyStore) -> None:
        self._txn, self._store = txn, store
        self.head, self.existing = txn.head, txn.existing

    def insert(self, rows: Any) -> None:
        self._txn.insert(rows)
        if self._store.fail_next:
            self._store.fail_next = False
            raise OSError("disk full")


def test_a_failed_commit_appends_nothing(
    tmp_path: Path, helpers: Any, signing_key: SigningKey
) -> None:
    store = FlakyStore(tmp_path / "l.sqlite3")
    with Ledger(store, signing_key) as ledger:
        ledger.append(helpers.make_entry(0))
        store.fail_next = True
        with pytest.raises(LedgerError, match="disk full"):
            ledger.append(helpers.make_entry(1))
        assert ledger.count() == 1
        assert ledger.append(helpers.make_entry(1)).seq == 1
        assert verify_export(helpers.export_lines(ledger), [signing_key.public_key]).ok


class _CommitFailsOnce:
    """A connection whose next COMMIT fails, leaving the transaction open as SQLite may."""

    def __init__(self, conn: Any) -> None:
        self._conn, self.armed = conn, True

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self.armed:
            self.armed = False
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_failed_commit_is_rolled_back(
    tmp_path: Path, helpers: Any, signing_key: SigningKey
) -> None:
    store = SQLiteStore(tmp_path / "l.sqlite3")
    with Ledger(store, signing_key) as ledger:
        ledger.append(helpers.make_entry(0))
        store._writer = _CommitFailsOnce(store._writer)  # type: ignore[assignment]
        with pytest.raises(LedgerError, match="disk I/O error"):
            ledger.append(helpers.make_entry(1))
        assert ledger.append(helpers.make_entry(1)).seq == 1
        with pytest.raises(TypeError):
            ledger.append("not an entry")  # type: ignore[arg-type]
        assert verify_export(helpers.export_lines(ledger), [signing_key.public_key]).ok


def test_read_only_and_closed(tmp_path: Path, helpers: Any, signing_key: SigningKey) -> None:
    with open_ledger(None, tmp_path, signing_key) as ledger:
        ledger.append(helpers.make_entry(0))
    reader = open_ledger(None, tmp_path, None)
    assert reader.count() == 1
    with pytest.raises(LedgerError, match="read-only"):
        reader.append(helpers.make_entry(1))
    reader.close()
    with pytest.raises(LedgerError, match="closed"):
        ledger.append(helpers.make_entry(1))


def test_tampered_last_record_is_detected_on_open(
    tmp_path: Path, helpers: Any, signing_key: SigningKey
) -> None:
    with open_ledger(None, tmp_path, signing_key) as ledger:
        helpers.fill(ledger, 3)
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    conn.execute("UPDATE records SET record = replace(record, 'acme', 'evil') WHERE seq = 2")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerCorruptError):
        open_ledger(None, tmp_path, signing_key)


def test_file_modes_urls_and_pragmas(tmp_path: Path, signing_key: SigningKey) -> None:
    with open_ledger(None, tmp_path, signing_key):
        pass
    path = tmp_path / "ledger.sqlite3"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = SQLiteStore(path)
    assert store._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    with open_ledger("sqlite:///sub/l.db", tmp_path, signing_key):
        assert (tmp_path / "sub" / "l.db").exists()
    with open_ledger(f"sqlite:///{tmp_path}/abs.db", Path("/nonexistent"), signing_key):
        assert (tmp_path / "abs.db").exists()
    with pytest.raises(LedgerError):
        open_ledger("mysql://x", tmp_path, signing_key)


def test_background_sync_fsyncs_every_commit_after_it_returns(
    tmp_path: Path, helpers: Any, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr("fairgate.metering.wal_sync.os.fsync", lambda fd: synced.append(fd))
    store = SQLiteStore(tmp_path / "l.sqlite3", sync="background")
    assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store.syncer is not None
    with Ledger(store, signing_key) as ledger:
        for i in range(5):
            ledger.append(helpers.make_entry(i))
        assert store.syncer.wait(timeout_s=10)
        assert store.syncer.unsynced == 0
        assert 1 <= len(synced) <= 5  # one fsync may cover several commits
        assert os.path.samefile(f"/proc/self/fd/{synced[-1]}", f"{store.path}-wal")
    with pytest.raises(LedgerError, match="sync"):
        SQLiteStore(tmp_path / "x.sqlite3", sync="sometimes")


# --- crash safety ------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys, threading, traceback
    from pathlib import Path
    from fairgate.metering import HiddenCommitter, LedgerEntry, Usage, load_signing_key, open_ledger

    data_dir, threads, prefix, sync = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    ledger = open_ledger(None, data_dir, load_signing_key(data_dir, environ={}), sync=sync)
    out = threading.Lock()

    def work(t):
        try:
            i = 0
            while True:
                committer = HiddenCommitter(block_size=4)
                committer.add([1, 2, 3], "abc")
                receipt = ledger.append(LedgerEntry(
                    f"{prefix}-t{t}-{i}", "acme", "m", "r0", "ok", 200, 1.0, 2.0,
                    Usage(10, 0, 5, 3), committer.commit(), committer.opening()))
                with out:  # acknowledged only after append() returned
                    sys.stdout.write(f"{receipt.seq} {receipt.request_id}\\n")
                    sys.stdout.flush()
                i += 1
        except BaseException:
            traceback.print_exc()
            os._exit(3)  # never leave the parent waiting on a silent child

    for t in range(threads):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.parametrize("sync", ["commit", "background"])
@pytest.mark.parametrize("threads", [1, 4])
def test_sigkill_loses_no_acknowledged_append(
    tmp_path: Path, helpers: Any, threads: int, sync: str
) -> None:
    key = SigningKey.from_pem(SigningKey.generate().private_pem())
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o700)
    (keys_dir / "signing.pem").write_text(key.private_pem())
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FAIRGATE_SIGNING_KEY", None)
    acknowledged: dict[str, int] = {}
    for round_ in range(2):  # kill, reopen, append more, kill again
        child = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(threads), f"round{round_}", sync],
            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        while len(acknowledged) < 300 * (round_ + 1) and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            seq, request_id = line.split()
            acknowledged[request_id] = int(seq)
        os.kill(child.pid, signal.SIGKILL)  # mid-stream: appends are in flight
        rest, _ = child.communicate(timeout=30)
        for line in rest.splitlines():  # written before the kill, still in the pipe
            seq, request_id = line.split()
            acknowledged[request_id] = int(seq)
        assert child.returncode == -signal.SIGKILL
        assert len(acknowledged) >= 300 * (round_ + 1), "child too slow or died early"

        with open_ledger(None, tmp_path, key) as ledger:
            for request_id, acked_seq in acknowledged.items():
                record = ledger.get(request_id)
                assert record is not None, f"acknowledged {request_id} lost"
                assert record["seq"] == acked_seq
            report = verify_export(helpers.export_lines(ledger), [key.public_key])
            assert report.ok, report.summary()
            assert ledger.count() >= len(acknowledged)
            ledger.append(helpers.make_entry(10_000 + round_))  # the chain resumes
