from __future__ import annotations

import pytest

from fairgate.metering.timestamps import format_rfc3339, parse_time


def test_format_is_fixed_width_utc_with_microseconds() -> None:
    assert format_rfc3339(0) == "1970-01-01T00:00:00.000000Z"
    assert format_rfc3339(1_750_000_000.25) == "2025-06-15T15:06:40.250000Z"
    assert format_rfc3339(1_750_000_000.0000004) == "2025-06-15T15:06:40.000000Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1750000000", 1_750_000_000.0),
        ("1750000000.5", 1_750_000_000.5),
        ("2025-06-15T15:06:40.250000Z", 1_750_000_000.25),
        ("2025-06-15T17:06:40+02:00", 1_750_000_000.0),
        ("2025-06-15T15:06:40", 1_750_000_000.0),
        ("2025-06-15", 1_749_945_600.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "nan", "inf", ""])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_round_trip() -> None:
    assert parse_time(format_rfc3339(1_750_000_123.456789)) == pytest.approx(1_750_000_123.456789)
