"""What metering costs: microseconds per hidden token, ledger appends per second with signing.

    python -m bench.metering_cost [--tokens 4096] [--records 3000] [--threads 8] [--dir DIR]
                                  [--all-cores] [--postgres-url URL]

* **Hidden-token commitment**: one ``HiddenCommitter`` per request, fed one token per ``add``
  (as a stream delivers them), then ``commit()`` (block fingerprints, one salted leaf hash per
  token, the RFC 6962 tree) and ``opening()`` (what the audit store keeps). Reported per hidden
  token, for several request lengths; best of ``--repeat`` runs (as ``timeit`` does), after a
  warm-up (the first milliseconds of a freshly pinned process run up to 2x slower here).
* **Ledger appends/s**: ``Ledger.append`` on SQLite (WAL, ``synchronous=FULL``: one fsync per
  commit) with Ed25519 signing, canonical JSON, hash chaining, and a 64-token opening stored per
  record, from 1 thread and from ``--threads`` threads (group commit shares fsyncs). Entries are
  built before the clock starts; the chain is verified afterwards.

By default the process is pinned to one CPU (``sched_setaffinity``), the "one core" of the target;
``--all-cores`` lifts that. The ledger lives in ``--dir`` (default: a temp dir), so the fsync
cost is that disk's: say which disk when quoting the numbers.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from fairgate.metering import (
    HiddenCommitter,
    LedgerEntry,
    SigningKey,
    Usage,
    export_ledger,
    open_ledger,
    verify_export,
)

TARGET_US_PER_TOKEN = 2.0
TARGET_RECORDS_PER_S = 2000.0


def commit_cost(tokens: int, repeat: int) -> tuple[float, float]:
    """Best (wall, CPU) µs per hidden token for add (1 token per call) + commit + opening."""
    ids = [(i * 7919) % 150_000 for i in range(tokens)]
    texts = [f" w{i % 97}" for i in range(tokens)]
    salt = bytes(32)
    best_wall = best_cpu = float("inf")
    gc.disable()
    try:
        for _ in range(repeat):
            wall, cpu = time.perf_counter(), time.thread_time()
            committer = HiddenCommitter(block_size=16, salt=salt)
            add = committer.add
            for token, text in zip(ids, texts, strict=True):
                add((token,), text)
            committer.commit()
            committer.opening()
            best_cpu = min(best_cpu, time.thread_time() - cpu)
            best_wall = min(best_wall, time.perf_counter() - wall)
    finally:
        gc.enable()
    return best_wall / tokens * 1e6, best_cpu / tokens * 1e6


def entries(count: int, prefix: str) -> list[LedgerEntry]:
    committer = HiddenCommitter(block_size=16, salt=bytes(32))
    for i in range(64):
        committer.add([1000 + i], f" w{i}")
    commitment, opening = committer.commit(), committer.opening()
    now = time.time()
    return [
        LedgerEntry(
            request_id=f"{prefix}-{i}", tenant=f"tenant-{i % 10}", model="bench-model",
            replica=f"r{i % 4}", status="ok", status_code=200, started_at=now - 1.5,
            finished_at=now, usage=Usage(512, 128, 64 + 200, 64), commitment=commitment,
            opening=opening,
        )
        for i in range(count)
    ]  # fmt: skip


def appends_per_second(url: str | None, data_dir: Path, records: int, threads: int,
                       key: SigningKey, chain: str) -> tuple[float, float]:  # fmt: skip
    """(records per wall-clock second, process CPU µs per record)."""
    work = entries(records, f"{chain}-{threads}")
    with open_ledger(url, data_dir, key, chain) as ledger:
        ledger.append(entries(1, f"{chain}-warmup-{threads}")[0])  # schema, page cache
        share = [work[t::threads] for t in range(threads)]
        start_line = threading.Barrier(threads + 1)

        def run(mine: list[LedgerEntry]) -> None:
            start_line.wait()
            for entry in mine:
                ledger.append(entry)

        workers = [threading.Thread(target=run, args=(mine,)) for mine in share]
        for worker in workers:
            worker.start()
        start_line.wait()
        start, cpu = time.perf_counter(), time.process_time()
        for worker in workers:
            worker.join()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return records / elapsed, cpu / records * 1e6


def verify_ledger(url: str | None, data_dir: Path, key: SigningKey) -> str:
    import io

    out = io.StringIO()
    with open_ledger(url, data_dir, None) as ledger:
        export_ledger(ledger, out)
    report = verify_export(out.getvalue().splitlines(keepends=True), [key.public_key])
    return report.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[256, 4096, 32768])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--dir", type=Path, help="where the SQLite ledger goes (kept; default: a temp dir, removed)"
    )
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--postgres-url", help="also measure PostgreSQL at this URL")
    args = parser.parse_args()

    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    rows: list[tuple[str, ...]] = []
    commit_cost(4096, 20)  # warm-up: let the CPU clock and caches settle before measuring
    for tokens in args.tokens:
        wall, cpu = commit_cost(tokens, args.repeat)
        rows.append((f"commitment, {tokens} hidden tokens", f"{wall:.2f} µs/token",
                     f"{cpu:.2f} µs/token", f"≤ {TARGET_US_PER_TOKEN:g} µs/token",
                     "yes" if wall <= TARGET_US_PER_TOKEN else "NO"))  # fmt: skip

    key = SigningKey.generate()
    base = Path(tempfile.mkdtemp(prefix="fairgate-bench-", dir=args.dir))
    runs = [("SQLite", None, "bench")]
    if args.postgres_url:
        runs.append(("PostgreSQL", args.postgres_url, f"bench-{os.getpid()}"))
    for name, url, chain in runs:
        for threads in (1, args.threads):
            rate, cpu = appends_per_second(url, base, args.records, threads, key, chain)
            target, met = (
                f"≥ {TARGET_RECORDS_PER_S:,.0f} records/s",
                ("yes" if rate >= TARGET_RECORDS_PER_S else "NO"),
            )
            if url is not None:
                target, met = "(no target)", "-"
            rows.append((f"{name} appends, {threads} thread{'s' if threads > 1 else ''}",
                         f"{rate:,.0f} records/s", f"{cpu:.0f} µs/record", target,
                         met))  # fmt: skip
    checked = verify_ledger(None, base, key)

    header = ("measure", "measured (wall clock)", "CPU", "target", "met")
    width = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPUs used: {cpus}; 1-minute load average {load:.2f}; ledger in {base}")
    for row in (header, tuple("-" * w for w in width), *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)))
    print(f"chain check: {checked}")
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
