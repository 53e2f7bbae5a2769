"""Exports of ledger records: JSONL to verify, CSV for spreadsheets, CloudEvents for pipelines.

* ``jsonl``: one signed record per line, as canonical JSON; ``metering.verify`` checks it.
* ``csv``: flat columns (tokens by class, cost by class, chain fields); the signature and hashes
  are columns too, but verification needs the JSONL.
* ``cloudevents``: one CloudEvents 1.0 event per line in structured mode (each line is an
  ``application/cloudevents+json`` document; ``jq -s .`` makes a batch for OpenMeter's
  ``POST /api/v1/events``). ``type`` is ``io.fairgate.usage``, ``source`` names the chain,
  ``id`` is the request id (pipelines deduplicate on source + id), ``subject`` the tenant,
  ``time`` the record's ``finished_at``, and ``data`` the whole signed record, so an event
  stream verifies like JSONL (``verify_export`` reads either).

A tenant- or time-filtered export is not a contiguous chain: verify it with ``allow_gaps``.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Protocol, TextIO

from fairgate.metering.canonical import canonical_json

CLOUDEVENT_TYPE = "io.fairgate.usage"
CSV_COLUMNS = (
    "chain", "seq", "request_id", "tenant", "model", "replica", "status", "status_code",
    "started_at", "finished_at", "prompt_tokens", "cached_tokens", "completion_tokens",
    "reasoning_tokens", "visible_completion_tokens", "total_tokens", "leaves", "root",
    "currency", "cost_prompt", "cost_cached_prompt", "cost_completion", "cost_reasoning",
    "cost_total", "key_id", "prev_hash", "record_hash", "signature",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    CLOUDEVENTS = "cloudevents"


class RecordSource(Protocol):
    def records(
        self, since: float | None = None, until: float | None = None, tenant: str | None = None
    ) -> Iterable[dict[str, Any]]: ...


def jsonl_line(record: dict[str, Any]) -> str:
    return canonical_json(record).decode("utf-8") + "\n"


def cloudevent(record: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode event carrying ``record``."""
    return {
        "specversion": "1.0",
        "type": CLOUDEVENT_TYPE,
        "source": source or f"/fairgate/chains/{record['chain']}",
        "id": record["request_id"],
        "time": record["finished_at"],
        "subject": record["tenant"],
        "datacontenttype": "application/json",
        "data": record,
    }


def _text(value: Any) -> str:
    """A string cell that a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_row(record: dict[str, Any]) -> list[Any]:
    usage = record["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    cost = record.get("cost") or {}
    return [
        _text(record["chain"]), record["seq"], _text(record["request_id"]),
        _text(record["tenant"]), _text(record["model"]), _text(record["replica"]),
        _text(record["status"]), record["status_code"], record["started_at"],
        record["finished_at"], usage["prompt_tokens"], cached, usage["completion_tokens"],
        reasoning, usage["completion_tokens"] - reasoning, usage["total_tokens"],
        record["commitment"]["leaves"], record["commitment"]["root"],
        _text(cost.get("currency", "")), cost.get("prompt", ""), cost.get("cached_prompt", ""),
        cost.get("completion", ""), cost.get("reasoning", ""), cost.get("total", ""),
        record["key_id"], record["prev_hash"],
        hashlib.sha256(canonical_json(record)).hexdigest(), record["signature"],
    ]  # fmt: skip


def write_records(
    records: Iterable[dict[str, Any]],
    out: TextIO,
    fmt: ExportFormat | str = ExportFormat.JSONL,
    *,
    source: str | None = None,
) -> int:
    """Write ``records`` to ``out`` in ``fmt``; returns how many were written."""
    fmt = ExportFormat(fmt)
    count = 0
    if fmt is ExportFormat.CSV:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for record in records:
            writer.writerow(csv_row(record))
            count += 1
    elif fmt is ExportFormat.CLOUDEVENTS:
        for record in records:
            out.write(jsonl_line(cloudevent(record, source)))
            count += 1
    else:
        for record in records:
            out.write(jsonl_line(record))
            count += 1
    return count


def export_ledger(
    ledger: RecordSource,
    out: TextIO,
    fmt: ExportFormat | str = ExportFormat.JSONL,
    *,
    since: float | None = None,
    until: float | None = None,
    tenant: str | None = None,
    source: str | None = None,
) -> int:
    """Export the ledger's records (``since`` inclusive, ``until`` exclusive, unix seconds)."""
    records = ledger.records(since=since, until=until, tenant=tenant)
    return write_records(records, out, fmt, source=source)
