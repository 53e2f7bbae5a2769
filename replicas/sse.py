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
