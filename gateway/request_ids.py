"""Request ids: ``req_`` and 32 hex digits of the operating system's randomness, as
``uuid4().hex`` gave, but read 4 KiB at a time: one ``getrandom`` system call per 256
requests instead of one per request (it was about 4% of the event loop's busy time)."""

from __future__ import annotations

import os

_BATCH = 4096


class RequestIds:
    __slots__ = ("_at", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def drop(self) -> None:
        self._pool, self._at = b"", 0

    def next(self) -> str:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(_BATCH), 0
        start = self._at
        self._at = start + 16
        return "req_" + self._pool[start : start + 16].hex()


_IDS = RequestIds()
# A forked child must not hand out the ids its parent has still to give.
os.register_at_fork(after_in_child=_IDS.drop)


def new_request_id() -> str:
    return _IDS.next()
