"""The PostgreSQL ledger against a real server (see conftest.postgres_server)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from fairgate.metering.errors import DuplicateRequestError
from fairgate.metering.ledger import open_ledger
from fairgate.metering.signing import SigningKey
from fairgate.metering.verify import verify_export


def test_append_read_and_verify(
    postgres_url: str, tmp_path: Path, helpers: Any, signing_key: SigningKey
) -> None:
    with open_ledger(postgres_url, tmp_path, signing_key, "gw-0") as ledger:
        helpers.fill(ledger, 10)
        assert ledger.count() == 10
        record = ledger.get("req-4")
        assert record is not None and record["seq"] == 4 and record["chain"] == "gw-0"
        opening = ledger.hidden("req-4")  # 4 reasoning tokens
        assert opening is not None and opening.commitment().root == record["commitment"]["root"]
        assert ledger.hidden("req-0") is None
        assert [r["seq"] for r in ledger.records(tenant="globex")] == [1, 3, 5, 7, 9]
        t0 = helpers.T0
        assert [r["seq"] for r in ledger.records(since=t0 + 2, until=t0 + 4)] == [2, 3]
        with pytest.raises(DuplicateRequestError):
            ledger.append(helpers.make_entry(3))
        lines = helpers.export_lines(ledger)
    assert verify_export(lines, [signing_key.public_key]).ok
    assert not (tmp_path / "ledger.sqlite3").exists()


def test_each_instance_keeps_its_own_chain_and_resumes(
    postgres_url: str, tmp_path: Path, helpers: Any
) -> None:
    key_a, key_b = SigningKey.generate(), SigningKey.generate()
    a = open_ledger(postgres_url, tmp_path / "a", key_a, "gw-a")
    b = open_ledger(postgres_url, tmp_path / "b", key_b, "gw-b")
    for i in range(6):
        (a if i % 2 == 0 else b).append(helpers.make_entry(i))
    a.close()
    with open_ledger(postgres_url, tmp_path / "a", key_a, "gw-a") as again:
        assert again.append(helpers.make_entry(100)).seq == 3  # resumed after seqs 0..2
    assert b.append(helpers.make_entry(101)).seq == 3
    lines = helpers.export_lines(b)  # every chain in the database
    b.close()
    report = verify_export(lines, [key_a.public_key, key_b.public_key])
    assert report.ok, report.summary()
    assert {c.chain: (c.first_seq, c.last_seq) for c in report.chains.values()} == {
        "gw-a": (0, 3),
        "gw-b": (0, 3),
    }


def test_concurrent_appends_and_two_writers_on_one_chain(
    postgres_url: str, tmp_path: Path, helpers: Any, signing_key: SigningKey
) -> None:
    # Two ledgers given the same chain id by mistake: the advisory lock keeps one valid chain.
    first = open_ledger(postgres_url, tmp_path, signing_key, "shared")
    second = open_ledger(postgres_url, tmp_path, signing_key, "shared")

    def worker(t: int) -> None:
        ledger = first if t % 2 else second
        for i in range(25):
            ledger.append(helpers.make_entry(t * 1000 + i, reasoning=i % 3))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = verify_export(helpers.export_lines(first), [signing_key.public_key])
    first.close()
    second.close()
    assert report.ok, report.summary()
    assert report.records == 150
