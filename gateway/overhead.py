"""The gateway's own share of a request's time, for the ``x-fairgate-overhead-ms`` header.

Everything from arrival to the response's bytes that is not the upstream's: parsing,
authentication, tokenization, queueing for the scheduler, relaying, metering and, for a
non-streamed answer, the ledger record. The upstream's share is from sending it the request
to its first event (streams: the header leaves with the first piece) or to its last
(non-streamed answers).
"""

from __future__ import annotations

import time


class UpstreamClock:
    __slots__ = ("end", "first", "sent")

    def __init__(self) -> None:
        self.sent: float | None = None
        self.first: float | None = None
        self.end: float | None = None

    def request_sent(self) -> None:
        self.sent, self.first, self.end = time.monotonic(), None, None

    def event(self) -> None:
        if self.first is None:
            self.first = time.monotonic()

    def ended(self) -> None:
        self.end = time.monotonic()

    def overhead_ms(self, arrived: float, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        upstream = 0.0
        if self.sent is not None and self.first is not None:
            upstream = (self.end if self.end is not None else self.first) - self.sent
        return max(0.0, now - arrived - upstream) * 1e3
