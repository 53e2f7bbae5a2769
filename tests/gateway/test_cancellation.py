from __future__ import annotations

import asyncio

import pytest

from fairgate.gateway.cancellation import to_the_end

pytestmark = pytest.mark.timeout(10)


async def test_work_ends_although_its_caller_is_cancelled_twice() -> None:
    done: list[str] = []

    async def record() -> None:
        await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        done.append("record")

    async def finish() -> None:
        await to_the_end(record())

    task = asyncio.ensure_future(finish())
    await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.sleep(0.04)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["record"]


async def test_uncancelled_work_returns_its_result_and_raises_its_error() -> None:
    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("no")

    assert await to_the_end(value()) == 7
    with pytest.raises(ValueError, match="no"):
        await to_the_end(fails())
