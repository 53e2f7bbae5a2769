"""Work that must end even when its request is cancelled: the ledger record. A request is
stopped by a native ``Task.cancel`` (the client leaving, a stalled upstream, a queue
timeout), and anyio's ``CancelScope(shield=True)`` does not hold against that: a second
cancellation landing in a ``finally`` would cut the record short."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def to_the_end(work: Awaitable[T]) -> T:
    """Run ``work`` to its end in a task of its own; a cancellation of the caller that lands
    meanwhile is raised once the work is done, so it is delayed, never lost."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # the work itself was cancelled (the loop is closing)
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()
