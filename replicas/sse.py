"""Reading a server-sent-events body into JSON payloads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

DONE = "[DONE]"


async def sse_payloads(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """Yield each ``data:`` payload as a dict, stopping at ``[DONE]``.

    Multi-line events are joined as the SSE specification says; comments and other fields
    are ignored.
    """
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r")
        if line == "":
            if data:
                payload = "\n".join(data)
                data = []
                if payload.strip() == DONE:
                    return
                yield json.loads(payload)
            continue
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
    if data and "\n".join(data).strip() != DONE:
        yield json.loads("\n".join(data))


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield each event's ``data`` as bytes, straight from the body's chunks, stopping at
    ``[DONE]``. The common event (one ``data:`` line) costs one slice; others are parsed as
    ``sse_payloads`` parses them."""
    async for batch in sse_batches(chunks):
        for data in batch:
            yield data


async def sse_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """``sse_data``, one list per body chunk read: the events that arrived together, so that
    the reader can relay them with one write."""
    buffer = b""
    async for chunk in chunks:
        buffer = buffer + chunk if buffer else chunk
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):  # its \n may be in the next chunk
                continue
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *events, buffer = buffer.split(b"\n\n")
        batch, done = _batch(events)
        if batch:
            yield batch
        if done:
            return
    data = _event_data(buffer) if buffer else None
    if data is not None and data.strip() != b"[DONE]":
        yield [data]


def _batch(events: list[bytes]) -> tuple[list[bytes], bool]:
    """The data of ``events`` up to ``[DONE]``, and whether it came."""
    batch: list[bytes] = []
    for event in events:
        data = _event_data(event)
        if data is None:
            continue
        if data.strip() == b"[DONE]":
            return batch, True
        batch.append(data)
    return batch, False


def _event_data(event: bytes) -> bytes | None:
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]
    lines = [
        line[6:] if line.startswith(b"data: ") else line[5:]
        for line in event.split(b"\n")
        if line.startswith(b"data:")
    ]
    return b"\n".join(lines) if lines else None
