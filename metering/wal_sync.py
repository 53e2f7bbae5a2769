"""Background fsync of a SQLite write-ahead log, for ``ledger.sync: background``.

With ``synchronous=NORMAL`` a WAL commit is written to the operating system (``write()``)
but not flushed to the disk: it survives the gateway process dying (SIGKILL, out of memory,
a bug), not a kernel crash or a power loss. This thread closes that gap right after each
commit, off the committing thread: one fsync at a time, each covering every commit made
before it started, so the window in which a machine crash can lose committed records is
about one fsync long (milliseconds), and it never holds a response.

fsync on a second descriptor of the WAL flushes the file, whoever wrote it. SQLite rewrites
the WAL from its start after a checkpoint, which under ``NORMAL`` it makes only after
syncing the WAL and then the database, so a record is always on the disk in one of the two.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

__all__ = ["WalSyncer"]


class WalSyncer:
    def __init__(self, wal: Path) -> None:
        self.wal = wal
        self._cond = threading.Condition()
        self._committed = 0  # commits reported so far
        self._synced = 0  # commits known to be on the disk
        self._closed = False
        self.last_sync_s = 0.0
        self._fd: int | None = None
        self._thread = threading.Thread(target=self._run, name="ledger-wal-sync", daemon=True)
        self._thread.start()

    def committed(self) -> int:
        """Report one more commit; returns its number (for ``wait``)."""
        with self._cond:
            self._committed += 1
            self._cond.notify_all()
            return self._committed

    @property
    def unsynced(self) -> int:
        with self._cond:
            return self._committed - self._synced

    def wait(self, commit: int | None = None, timeout_s: float = 30.0) -> bool:
        """Block until commit number ``commit`` (default: every commit so far) is on disk."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            target = self._committed if commit is None else commit
            while self._synced < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._synced == self._committed and not self._closed:
                    self._cond.wait()
                if self._closed and self._synced == self._committed:
                    return
                target = self._committed
            started = time.perf_counter()
            try:
                self._fsync()
            except OSError:  # nothing is claimed synced; try again shortly
                time.sleep(0.1)
                continue
            with self._cond:
                self.last_sync_s = time.perf_counter() - started
                self._synced = target
                self._cond.notify_all()

    def _fsync(self) -> None:
        if self._fd is None:
            try:
                self._fd = os.open(self.wal, os.O_RDONLY)
            except FileNotFoundError:  # nothing written yet
                return
        os.fsync(self._fd)

    def close(self) -> None:
        """Sync what is left, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30.0)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
