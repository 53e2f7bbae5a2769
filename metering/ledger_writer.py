"""One long-lived thread that appends to a ``Ledger`` on behalf of event loops.

``await writer.append(entry)`` queues the entry and waits on a future of the caller's loop. The
thread takes whatever has queued since its last batch, appends it with one ``append_many`` (one
transaction, one commit, so one fsync under ``synchronous=FULL``), and settles every future of
that batch with one ``call_soon_threadsafe`` per loop. A lone entry is written as soon as the
thread wakes: nothing waits for a batch to fill, only for the commit in flight.

Against an ``asyncio.to_thread`` per record, this drops a thread-pool hand-off and a wake-up of
the loop per record and, above all, the pool's herd: on one core, every worker parked in the
ledger's group commit was woken, and took the GIL, at each commit (measured in
``bench/RESULTS.md``, "Gateway hot path", fourth pass).

A receipt still means what ``Ledger.append`` promises: its future is settled only after the
commit that holds its record has returned.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from queue import Empty, SimpleQueue

from fairgate.metering.errors import LedgerError
from fairgate.metering.ledger import Ledger
from fairgate.metering.record import LedgerEntry, Receipt

__all__ = ["LedgerWriter"]

log = logging.getLogger("fairgate.ledger")


@dataclass(slots=True)
class _Job:
    entry: LedgerEntry
    future: asyncio.Future[Receipt]
    loop: asyncio.AbstractEventLoop


_Outcome = Receipt | Exception


class LedgerWriter:
    """See the module docstring. ``close`` appends what is queued, then stops the thread."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._lock = threading.Lock()  # orders append's put against close's sentinel
        self._closed = False
        self._thread: threading.Thread | None = None

    async def append(self, entry: LedgerEntry) -> Receipt:
        """The receipt of ``entry``'s durably committed record; raises what ``Ledger.append``
        raises. A cancelled caller's record is still written."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Receipt] = loop.create_future()
        with self._lock:
            if self._closed:
                raise LedgerError("ledger is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
                self._thread.start()
            self._jobs.put(_Job(entry, future, loop))
        return await future

    def _run(self) -> None:
        stop = False
        while not stop:
            job = self._jobs.get()
            if job is None:
                return
            jobs = [job]
            while True:
                try:
                    job = self._jobs.get_nowait()
                except Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            self._settle(jobs, self._append(jobs))

    def _append(self, jobs: list[_Job]) -> list[_Outcome]:
        try:
            return self.ledger.append_many([job.entry for job in jobs])
        except Exception as error:  # closed, read-only, or a bug: every caller hears of it
            return [error] * len(jobs)

    @staticmethod
    def _settle(jobs: list[_Job], outcomes: list[_Outcome]) -> None:
        by_loop: defaultdict[asyncio.AbstractEventLoop, list[tuple[_Job, _Outcome]]]
        by_loop = defaultdict(list)
        for job, outcome in zip(jobs, outcomes, strict=True):
            by_loop[job.loop].append((job, outcome))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_complete, settled)
            except RuntimeError:  # that loop is closed: nobody is left waiting
                log.warning("ledger writer: %d receipts for a closed event loop", len(settled))

    def close(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)


def _complete(settled: list[tuple[_Job, _Outcome]]) -> None:
    for job, outcome in settled:
        if job.future.done():  # its caller was cancelled
            continue
        if isinstance(outcome, Receipt):
            job.future.set_result(outcome)
        else:
            job.future.set_exception(outcome)
