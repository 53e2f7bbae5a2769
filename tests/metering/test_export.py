"""Exports: JSONL that verifies, CSV with costs, CloudEvents 1.0 for billing pipelines."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from fairgate.metering.export import CLOUDEVENT_TYPE, CSV_COLUMNS, export_ledger, write_records
from fairgate.metering.ledger import Ledger, open_ledger
from fairgate.metering.pricing import PriceTable
from fairgate.metering.record import record_hash
from fairgate.metering.signing import SigningKey
from fairgate.metering.verify import verify_export


def test_jsonl_is_one_canonical_signed_record_per_line(
    sqlite_ledger: Ledger, helpers: Any, signing_key: SigningKey
) -> None:
    records = helpers.fill(sqlite_ledger, 5)
    lines = helpers.export_lines(sqlite_ledger)
    assert [json.loads(line) for line in lines] == records
    assert all(line.endswith("\n") and " " not in line.split('"usage"')[0] for line in lines)
    assert verify_export(lines, [signing_key.public_key]).ok


def test_csv_has_flat_columns_and_cost(
    tmp_path: Path, helpers: Any, signing_key: SigningKey
) -> None:
    pricing = PriceTable.from_config({"m1": {"prompt": 1, "completion": 2, "reasoning": 4}})
    with open_ledger(None, tmp_path, signing_key, pricing=pricing) as ledger:
        helpers.fill(ledger, 4)
        ledger.append(
            helpers.make_entry(99, tenant="=cmd|' /C calc'!A0")  # spreadsheet formula injection
        )
        records = list(ledger.records())
        out = io.StringIO()
        assert export_ledger(ledger, out, "csv") == 5
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS
    row = rows[3]  # seq 3: 3 reasoning tokens
    assert row["reasoning_tokens"] == "3" and row["visible_completion_tokens"] == "10"
    assert row["cost_total"] == records[3]["cost"]["total"] == "0.000052000000"
    assert row["currency"] == "USD"
    assert row["record_hash"] == record_hash(records[3])
    assert row["leaves"] == "3"
    assert rows[4]["tenant"].startswith("'=")


def test_cloudevents_structured_mode(
    sqlite_ledger: Ledger, helpers: Any, signing_key: SigningKey
) -> None:
    helpers.fill(sqlite_ledger, 3)
    out = io.StringIO()
    export_ledger(sqlite_ledger, out, "cloudevents")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(events) == 3
    event = events[1]
    assert event["specversion"] == "1.0"
    assert event["type"] == CLOUDEVENT_TYPE == "io.fairgate.usage"
    assert event["source"] == "/fairgate/chains/default"
    assert event["id"] == "req-1"
    assert event["subject"] == "globex"
    assert event["time"] == event["data"]["finished_at"]
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == sqlite_ledger.get("req-1")
    lines = out.getvalue().splitlines(keepends=True)
    assert verify_export(lines, [signing_key.public_key]).ok


def test_filters_and_custom_source(sqlite_ledger: Ledger, helpers: Any) -> None:
    helpers.fill(sqlite_ledger, 6)
    out = io.StringIO()
    count = export_ledger(sqlite_ledger, out, "cloudevents", tenant="acme",
                          since=helpers.T0 + 1, source="urn:fairgate:test")  # fmt: skip
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == 2
    assert [e["data"]["seq"] for e in events] == [2, 4]
    assert {e["source"] for e in events} == {"urn:fairgate:test"}


def test_empty_export() -> None:
    out = io.StringIO()
    assert write_records([], out, "csv") == 0
    assert out.getvalue().strip() == ",".join(CSV_COLUMNS)
