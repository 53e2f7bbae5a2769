from __future__ import annotations

import asyncio
import logging

from fairgate.gateway.periodic import Periodic


async def test_steps_repeat_survive_failures_and_stop() -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("one bad step")

    loop = Periodic(step, lambda: 0.01, name="t", log=logging.getLogger("t"))
    loop.start()
    loop.start()  # idempotent: still one task
    while len(calls) < 5:
        await asyncio.sleep(0.01)
    await loop.stop()
    stopped_at = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == stopped_at and calls[:5] == [0, 1, 2, 3, 4]
