"""A background task that runs one step every ``interval`` seconds until stopped; a failing
step is logged and the next one runs as usual."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class Periodic:
    def __init__(
        self,
        step: Callable[[], Awaitable[None]],
        interval: Callable[[], float],
        *,
        name: str,
        log: logging.Logger,
    ) -> None:
        self.step = step
        self.interval = interval  # read before each sleep, so a test can shorten it
        self.name = name
        self.log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:
                self.log.exception("%s failed", self.name)
            await asyncio.sleep(self.interval())
