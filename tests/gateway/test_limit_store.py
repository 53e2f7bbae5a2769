"""The counter store behind tenant limits, on SQLite (PostgreSQL: test_limits_postgres.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from fairgate.gateway import limits
from fairgate.gateway.config import TenantLimits
from fairgate.gateway.limit_store import (
    LEASE_S,
    WINDOW_S,
    Ask,
    LimitStore,
    LimitStoreError,
    Settlement,
    SQLiteLimitStore,
    decide,
)
from fairgate.gateway.limits import LimitStoreUnavailable, TenantLimitsGate
from fairgate.metering.pricing import PriceTable

T0 = 1_800_000_000.0


def rpm(limit: int) -> Ask:
    return Ask("requests", Decimal(1), Decimal(limit), WINDOW_S)


def test_requests_fill_a_rolling_window_and_leave_it(tmp_path: Path) -> None:
    store = SQLiteLimitStore(tmp_path / "limits.sqlite3")
    for i in range(3):
        assert store.reserve("alice", f"r{i}", [rpm(3)], T0 + i) is None
    refusal = store.reserve("alice", "r3", [rpm(3)], T0 + 10)
    assert refusal is not None and refusal.kind == "requests"
    assert refusal.used == 3 and refusal.retry_after == 50  # the first hold leaves at T0 + 60
    assert store.reserve("bob", "b0", [rpm(3)], T0 + 10) is None  # per tenant
    assert store.reserve("alice", "r4", [rpm(3)], T0 + 60.5) is None  # r0 has left
    assert store.reserve("alice", "r5", [rpm(3)], T0 + 60.6) is not None


def test_all_holds_or_none(tmp_path: Path) -> None:
    store = SQLiteLimitStore(tmp_path / "limits.sqlite3")
    concurrent = Ask("concurrent", Decimal(1), Decimal(1), LEASE_S)
    assert store.reserve("alice", "a", [rpm(5), concurrent], T0) is None
    refusal = store.reserve("alice", "b", [rpm(5), concurrent], T0 + 1)
    assert refusal is not None and refusal.kind == "concurrent" and refusal.retry_after == 1
    # The refused request took no request hold either: four more fit after a settle.
    store.settle(Settlement("a", "alice", None, None), T0 + 2)
    for i in range(4):
        assert store.reserve("alice", f"c{i}", [rpm(5)], T0 + 3) is None
    assert store.reserve("alice", "d", [rpm(5)], T0 + 3) is not None


def test_tokens_are_settled_on_real_usage(tmp_path: Path) -> None:
    store = SQLiteLimitStore(tmp_path / "limits.sqlite3")
    tpm = Decimal(1000)
    assert store.reserve("alice", "a", [Ask("tokens", Decimal(900), tpm, WINDOW_S)], T0) is None
    assert store.reserve("alice", "b", [Ask("tokens", Decimal(200), tpm, WINDOW_S)], T0) is not None
    used = Settlement("a", "alice", 150, None, tokens_estimate=900, admitted_at=T0)
    store.settle(used, T0 + 30)  # used 150 of its 900 estimate
    assert (
        store.reserve("alice", "b", [Ask("tokens", Decimal(800), tpm, WINDOW_S)], T0 + 31) is None
    )
    # a's real tokens count for 60 s from its settlement, not from its admission
    refusal = store.reserve("alice", "c", [Ask("tokens", Decimal(100), tpm, WINDOW_S)], T0 + 80)
    assert refusal is not None and refusal.retry_after == 10
    assert (
        store.reserve("alice", "c", [Ask("tokens", Decimal(100), tpm, WINDOW_S)], T0 + 91) is None
    )


def test_a_lone_request_above_the_token_limit_still_runs() -> None:
    ask = Ask("tokens", Decimal(5000), Decimal(1000), WINDOW_S)
    assert decide([ask], {}, Decimal(0), T0) is None
    assert decide([ask], {"tokens": (Decimal(1), T0 + 5)}, Decimal(0), T0) is not None


def test_budget_holds_the_estimate_and_keeps_the_real_cost(tmp_path: Path) -> None:
    store = SQLiteLimitStore(tmp_path / "limits.sqlite3")
    end = T0 + 3600

    def spend(amount: str) -> Ask:
        return Ask("spend", Decimal(amount), Decimal("1.00"), LEASE_S, "p1", end)

    assert store.reserve("alice", "a", [spend("0.60")], T0) is None
    refusal = store.reserve("alice", "b", [spend("0.50")], T0 + 1)
    assert refusal is not None and refusal.kind == "spend" and refusal.retry_after == 3599
    store.settle(Settlement("a", "alice", None, Decimal("0.000150000001"), "p1"), T0 + 2)
    assert store.spent("alice", "p1") == Decimal("0.000150000001")  # exact, not a float
    assert store.reserve("alice", "b", [spend("0.50")], T0 + 3) is None
    store.settle(Settlement("b", "alice", None, Decimal("0.999"), "p1"), T0 + 4)
    assert store.reserve("alice", "c", [spend("0.001")], T0 + 5) is not None
    assert store.spent("alice", "p2") == 0


def test_two_stores_on_one_file_never_admit_past_the_limit(tmp_path: Path) -> None:
    stores = [SQLiteLimitStore(tmp_path / "limits.sqlite3") for _ in range(2)]
    admitted: list[str] = []

    def worker(n: int) -> None:
        for i in range(40):
            rid = f"w{n}-{i}"
            if stores[n % 2].reserve("alice", rid, [rpm(25)], T0) is None:
                admitted.append(rid)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 25


def _gate(open_store: Callable[[], LimitStore], clock: Callable[[], float]) -> TenantLimitsGate:
    limits = {"t": TenantLimits(requests_per_minute=10_000)}
    return TenantLimitsGate(limits, PriceTable(), open_store, clock)


async def test_an_unreachable_store_fails_closed() -> None:
    def broken() -> LimitStore:
        raise LimitStoreError("connection refused")

    gate = _gate(broken, lambda: T0)
    with pytest.raises(LimitStoreUnavailable) as caught:
        await gate.admit("t", "r1", "m", 10, 10)
    assert caught.value.status == 503 and caught.value.code == "limit_store_unavailable"
    await gate.admit("other", "r2", "m", 10, 10)  # an unlimited tenant never needs the store


async def test_requests_never_settled_are_forgotten_after_their_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "STALE_CHECK", 50)
    now = [T0]
    store = SQLiteLimitStore(tmp_path / "limits.sqlite3")
    gate = _gate(lambda: store, lambda: now[0])
    for i in range(50):
        await gate.admit("t", f"r{i}", "m", 1, 1)
    now[0] += limits.STALE_S + 1
    await gate.admit("t", "late", "m", 1, 1)
    assert list(gate._held) == ["late"]


async def test_running_requests_renew_their_leases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "RENEW_S", 0.05)
    now = [T0]
    store = SQLiteLimitStore(tmp_path / "limits.sqlite3")
    gate = TenantLimitsGate(
        {"t": TenantLimits(max_concurrent=1)}, PriceTable(), lambda: store, lambda: now[0]
    )
    await gate.admit("t", "long", "m", 1, 1)
    now[0] += LEASE_S - 1
    await asyncio.sleep(0.3)  # renewed at T0 + LEASE_S - 1, to T0 + 2 * LEASE_S - 1
    now[0] += 10  # the first lease would have ended; the renewed one holds
    concurrent = Ask("concurrent", Decimal(1), Decimal(1), LEASE_S)
    assert store.reserve("t", "other", [concurrent], now[0]) is not None
    gate.close()  # stops renewing, as a gateway that died does: its lease ends, and then
    again = SQLiteLimitStore(tmp_path / "limits.sqlite3")  # the tenant may run again
    assert again.reserve("t", "other", [concurrent], now[0] + LEASE_S) is None
