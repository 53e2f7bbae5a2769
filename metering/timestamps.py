"""Record timestamps: RFC 3339 UTC strings with exactly six fractional digits.

``2025-01-31T12:00:00.250000Z``: fixed width, so string order is time order, and no float ever
enters signed bytes (see :mod:`metering.canonical`). The gateway passes unix seconds (floats);
they are rounded to the microsecond once, here.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_rfc3339(unix_seconds: float) -> str:
    """``2025-01-31T12:00:00.250000Z`` for the given unix time, rounded to the microsecond."""
    seconds, micros = divmod(round(unix_seconds * 1_000_000), 1_000_000)
    t = time.gmtime(seconds)  # integer seconds: exact, and 4x faster than datetime.strftime
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micros:06d}Z"
    )


def parse_time(text: str) -> float:
    """Unix seconds from unix seconds (``1735689600.5``) or RFC 3339 / ISO 8601 text.

    A date or time without an offset is taken as UTC. Raises ``ValueError`` otherwise.
    """
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"not a finite time: {text!r}")
        return seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not unix seconds or an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH).total_seconds()
