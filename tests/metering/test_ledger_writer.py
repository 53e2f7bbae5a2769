"""The ledger's writer thread for event loops, and ``Ledger.append_many`` under it."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from typing import Any

import pytest

from fairgate.metering.errors import CanonicalJSONError, DuplicateRequestError, LedgerError
from fairgate.metering.ledger import Ledger
from fairgate.metering.ledger_writer import LedgerWriter
from fairgate.metering.record import Receipt
from fairgate.metering.signing import SigningKey
from fairgate.metering.verify import verify_export


def test_append_many_keeps_order_and_fails_a_bad_entry_alone(
    sqlite_ledger: Ledger, helpers: Any
) -> None:
    bad = replace(helpers.make_entry(2), tenant="\ud800")  # no UTF-8 form
    outcomes = sqlite_ledger.append_many(
        [helpers.make_entry(1), bad, helpers.make_entry(3), helpers.make_entry(1)]
    )
    assert isinstance(outcomes[0], Receipt) and outcomes[0].seq == 0
    assert isinstance(outcomes[1], CanonicalJSONError)
    assert isinstance(outcomes[2], Receipt) and outcomes[2].seq == 1
    assert isinstance(outcomes[3], DuplicateRequestError)  # the same id twice in one call
    assert sqlite_ledger.append_many([]) == []


def test_append_many_beside_threads_appending_one_by_one(
    sqlite_ledger: Ledger, helpers: Any, signing_key: SigningKey
) -> None:
    def one_by_one() -> None:
        for i in range(40):
            sqlite_ledger.append(helpers.make_entry(10_000 + i))

    thread = threading.Thread(target=one_by_one)
    thread.start()
    outcomes = sqlite_ledger.append_many([helpers.make_entry(i) for i in range(1500)])
    thread.join()
    assert all(isinstance(o, Receipt) for o in outcomes)  # more than one batch's worth
    seqs = [o.seq for o in outcomes if isinstance(o, Receipt)]
    assert seqs == sorted(seqs)
    report = verify_export(helpers.export_lines(sqlite_ledger), [signing_key.public_key])
    assert report.ok and report.records == 1540


async def test_concurrent_callers_share_batches_and_get_their_own_receipts(
    sqlite_ledger: Ledger, helpers: Any, signing_key: SigningKey
) -> None:
    writer = LedgerWriter(sqlite_ledger)
    calls: list[int] = []
    append_many = sqlite_ledger.append_many

    def counting(entries: Any) -> Any:
        calls.append(len(entries))
        return append_many(entries)

    sqlite_ledger.append_many = counting  # type: ignore[method-assign]
    try:
        entries = [helpers.make_entry(i, reasoning=i % 3) for i in range(200)]
        receipts = await asyncio.gather(*(writer.append(e) for e in entries))
    finally:
        writer.close()
    assert [r.request_id for r in receipts] == [e.request_id for e in entries]
    assert sorted(r.seq for r in receipts) == list(range(200))
    assert sum(calls) == 200 and len(calls) < 200  # batched: fewer commits than records
    report = verify_export(helpers.export_lines(sqlite_ledger), [signing_key.public_key])
    assert report.ok and report.records == 200


async def test_errors_reach_their_callers(sqlite_ledger: Ledger, helpers: Any) -> None:
    writer = LedgerWriter(sqlite_ledger)
    try:
        await writer.append(helpers.make_entry(1))
        with pytest.raises(DuplicateRequestError):
            await writer.append(helpers.make_entry(1))
        assert (await writer.append(helpers.make_entry(2))).seq == 1
    finally:
        writer.close()
    with pytest.raises(LedgerError, match="closed"):
        await writer.append(helpers.make_entry(3))


async def test_a_cancelled_caller_still_gets_its_record_written(
    sqlite_ledger: Ledger, helpers: Any
) -> None:
    writer = LedgerWriter(sqlite_ledger)
    try:
        task = asyncio.ensure_future(writer.append(helpers.make_entry(7)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await writer.append(helpers.make_entry(8))  # after the first, in order
    finally:
        writer.close()
    assert sqlite_ledger.get("req-7") is not None


async def test_a_closed_ledger_fails_the_queued_callers(
    sqlite_ledger: Ledger, helpers: Any
) -> None:
    writer = LedgerWriter(sqlite_ledger)
    sqlite_ledger.close()
    try:
        with pytest.raises(LedgerError, match="closed"):
            await asyncio.wait_for(writer.append(helpers.make_entry(1)), 10)
    finally:
        writer.close()
