"""Noticing that the client went away, at the cost of one task per request.

ASGI servers tell an application that its client left only through ``receive()``; a send to
a gone client is silently dropped. ``ClientGone`` waits on ``receive()`` in a task of its
own and, when the client leaves, cancels the task that is serving it, so that the work in
progress ends where it stands (a generation then records ``client_disconnected``).
Starlette's ``StreamingResponse`` does the same with an anyio task group and two tasks; the
first piece of a stream used two more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message


class ClientLeft(Exception):
    """The client went away before its answer was sent; nothing more can reach it (its
    request is recorded ``client_disconnected``). Ends the request quietly, unlike the
    cancellation it replaces, which the server logs as an application error."""


class ClientGone:
    """Watches from creation until ``close()``; the serving task is cancelled once at most."""

    __slots__ = ("_closed", "_served", "_watcher", "gone")

    def __init__(self, receive: Callable[[], Awaitable[Message]]) -> None:
        served = asyncio.current_task()
        if served is None:  # pragma: no cover - always called from a request's task
            raise RuntimeError("ClientGone needs a running task")
        self._served: asyncio.Task[Any] = served
        self._closed = False
        self.gone = False
        self._watcher = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Callable[[], Awaitable[Message]]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self._closed:
            self.gone = True
            self._served.cancel()

    def close(self) -> None:
        self._closed = True
        self._watcher.cancel()

    def absorb(self) -> bool:
        """In an ``except CancelledError``: whether the cancellation was this watch's (it is
        then taken back, so the serving task may go on to finish cleanly)."""
        return self.gone and self._served.uncancel() == 0
