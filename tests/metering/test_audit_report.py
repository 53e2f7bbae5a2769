"""The audit report and the receipt on the wire, and the findings' shape."""

from __future__ import annotations

import json

import pytest

from fairgate.metering.audit import parse_receipt
from fairgate.metering.audit_report import Finding, Reason, Severity
from fairgate.metering.record import Receipt
from tests.metering.audit_helpers import audit, honest


def test_report_and_receipt_round_trip() -> None:
    _, record, challenge, response = honest(12)
    report = audit(record, response, challenge)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["positions"] == list(challenge.positions(12))
    receipt = Receipt.from_record(record)
    assert parse_receipt(receipt.to_dict()) == receipt
    for bad in ({}, {**receipt.to_dict(), "leaves": -1}, {**receipt.to_dict(), "root": "x"}, []):
        with pytest.raises(ValueError):
            parse_receipt(bad)  # type: ignore[arg-type]


def test_a_finding_prints_and_serializes_its_place_and_severity() -> None:
    finding = Finding(Reason.DUPLICATE, "blocks 0 and 16 repeat", 16, Severity.WARN)
    assert str(finding) == "WARN duplicate at position 16: blocks 0 and 16 repeat"
    assert finding.to_dict() == {
        "reason": "duplicate",
        "severity": "warn",
        "position": 16,
        "detail": "blocks 0 and 16 repeat",
    }
