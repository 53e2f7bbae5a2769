"""The streamed response notices a gone client between pieces, even when no piece waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.types import Message

from fairgate.gateway.event_stream import EventStream, LastPiece


async def test_a_gone_client_ends_a_body_that_never_waits() -> None:
    produced: list[int] = []
    closed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            for n in range(1000):  # an upstream's buffered reads: nothing to wait for
                produced.append(n)
                yield LastPiece(b"end") if n == 999 else b"data: {}\n\n"
        finally:
            closed.set()

    async def receive() -> Message:
        return {"type": "http.disconnect"}  # the client left before the first piece

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)  # a server drops a gone client's bytes without waiting

    async def serve() -> None:
        await EventStream(body(), {})({"type": "http"}, receive, send)

    await asyncio.create_task(serve())
    assert closed.is_set()  # the body was closed where it stood, not run to its end
    assert len(produced) < 10, len(produced)
    assert sent[0]["type"] == "http.response.start"
