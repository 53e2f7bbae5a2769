"""What a tenant limit costs per request: one ``reserve`` and one ``settle`` on the counter
store, with the tenant's window already holding ``--fill`` requests spread over its 60 s. The
window keeps one bucket per second and limit, so a check sums at most 60 rows per limit
however busy the tenant (concurrency and budget leases: one per request in flight).

    python -m bench.limits_cost [--requests 2000] [--fill 0,1000,10000] [--postgres-url URL]

Each request asks for a request, a tokens and a concurrency hold, like a tenant with
``requests_per_minute``, ``tokens_per_minute`` and ``max_concurrent``; from one thread, so
the figure is latency, not throughput. SQLite runs in a temp dir; PostgreSQL (when a URL is
given) in a fresh schema-less database it is pointed at (tables ``fairgate_limit_*``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from fairgate.gateway.limit_store import (
    LEASE_S,
    WINDOW_S,
    Ask,
    LimitStore,
    PostgresLimitStore,
    Settlement,
    SQLiteLimitStore,
)

ASKS = [
    Ask("requests", Decimal(1), Decimal(10**9), WINDOW_S),
    Ask("tokens", Decimal(300), Decimal(10**12), WINDOW_S),
    Ask("concurrent", Decimal(1), Decimal(10**9), LEASE_S),
]


def measure(store: LimitStore, tenant: str, requests: int, fill: int) -> list[float]:
    now = time.time()
    for i in range(fill):  # spread over the window, as steady traffic is
        store.reserve(tenant, f"{tenant}-fill-{i}", ASKS[:2], now - 59 + i % 60)
    timings = []
    for i in range(requests):
        rid = f"{tenant}-r{i}"
        start = time.perf_counter()
        store.reserve(tenant, rid, ASKS, now)
        store.settle(Settlement(rid, tenant, 280, None, tokens_estimate=300, admitted_at=now), now)
        timings.append(time.perf_counter() - start)
    return timings


def row(name: str, fill: int, timings: list[float]) -> str:
    ms = sorted(t * 1000 for t in timings)
    p99 = ms[int(len(ms) * 0.99) - 1]
    rate = 1000 / statistics.fmean(ms)
    return f"| {name} | {fill} | {statistics.median(ms):.2f} | {p99:.2f} | {rate:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--fill", default="0,1000,10000")
    parser.add_argument("--postgres-url")
    args = parser.parse_args()
    fills = [int(f) for f in args.fill.split(",")]
    print("| store | holds in the window | ms per request, median | P99 | requests/s, one thread |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, LimitStore]] = [("SQLite", SQLiteLimitStore(Path(tmp) / "l.db"))]
        if args.postgres_url:
            stores.append(("PostgreSQL", PostgresLimitStore(args.postgres_url, connections=1)))
        for name, store in stores:
            for fill in fills:
                print(row(name, fill, measure(store, f"t{fill}", args.requests, fill)), flush=True)
            store.close()


if __name__ == "__main__":
    main()
