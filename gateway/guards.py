"""Request guards: a tenant's ceiling on ``max_tokens``, the engine's reasoning budget, and
the timeouts for waiting in the queue and for an upstream stream that stalls.

Timeouts, and why each answers what it does:

* queue: 503 ``queue_timeout`` with ``Retry-After``. The request waited its full time because
  the replicas are busy (capacity), not because the tenant passed a limit of its own, which
  is what a 429 would tell it.
* stall: 504 ``upstream_timeout``. The engine took the request and then went quiet; before the
  first byte this is the HTTP status, after it an error event ends the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from fairgate.gateway.errors import APIError, InvalidRequest, Unavailable
from fairgate.metering.record import Status

if TYPE_CHECKING:
    from fairgate.gateway.config import TenantConfig
    from fairgate.gateway.replica_set import ModelRuntime

T = TypeVar("T")


class MaxTokensTooHigh(InvalidRequest):
    code = "max_tokens_exceeded"


class QueueTimeout(Unavailable):
    code = "queue_timeout"
    ledger_status = Status.TIMEOUT


class UpstreamStalled(APIError):
    status = 504
    type = "api_error"
    code = "upstream_timeout"
    ledger_status = Status.TIMEOUT


def requested_max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if value else None


def apply_max_tokens_ceiling(
    ceiling: int, model: ModelRuntime, body: dict[str, Any], prompt_tokens: int
) -> None:
    """Refuse a ``max_tokens`` above the tenant's ceiling; without one, the ceiling is the
    request's (shortened to what the context has room for)."""
    wanted = requested_max_tokens(body)
    field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if wanted is not None:
        if wanted > ceiling:
            raise MaxTokensTooHigh(
                f"'{field}' is {wanted}, above this tenant's ceiling of {ceiling}.", param=field
            )
        return
    room = model.max_model_len - prompt_tokens if model.max_model_len else ceiling
    body["max_tokens"] = max(1, min(ceiling, room))


def engine_reasoning_budget(
    tenant: TenantConfig, model: ModelRuntime, body: dict[str, Any]
) -> None:
    """Ask the engine to cut the reasoning itself where it can: vLLM's ``thinking_token_budget``
    needs a reasoning parser (it refuses the field otherwise), so it is sent to a vLLM that
    fairgate starts with one, or to an ``openai`` upstream whose config names the parser it
    runs. The gateway enforces the budget in every case (``reasoning_budget``)."""
    budget = tenant.max_reasoning_tokens
    if budget is None or model.config.provider == "sim" or not model.config.reasoning_parser:
        return
    asked = body.get("thinking_token_budget")
    body["thinking_token_budget"] = budget if not isinstance(asked, int) else min(asked, budget)


async def within(work: Awaitable[T], timeout: float | None, model: str) -> T:
    """Wait for a replica slot for at most ``timeout`` seconds."""
    if timeout is None:
        return await work
    try:
        async with asyncio.timeout(timeout):
            return await work
    except TimeoutError:
        raise QueueTimeout(
            f"The request waited {timeout:g} s for a replica of model '{model}' and none was "
            "free; the replicas are at capacity. Retry later.",
            headers={"Retry-After": str(max(1, round(timeout / 10)))},
        ) from None


async def stall_guard(
    events: AsyncGenerator[T, None], timeout: float | None
) -> AsyncGenerator[T, None]:
    """``events``, failing with 504 when the next one takes longer than ``timeout``.

    One timer per stream, not one per event (entering ``asyncio.timeout`` per event cost about
    7% of the relay's time): each wait only notes when it began, and the timer, when it fires,
    cancels the wait only if that wait has lasted ``timeout``; otherwise it re-arms itself.
    """
    if timeout is None:
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()
        return
    watch = _StallWatch(timeout)
    try:
        while True:
            watch.waiting()
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if not watch.fired():
                    raise
                raise UpstreamStalled(
                    f"The upstream sent nothing for {timeout:g} s; the request was stopped."
                ) from None
            finally:
                watch.idle()
            yield event
    finally:
        watch.stop()
        await events.aclose()


class _StallWatch:
    """The lazily re-armed timer behind ``stall_guard``."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[Any] | None = None
        self._since: float | None = None  # when the current wait began; None: not waiting
        self._handle: asyncio.TimerHandle | None = None
        self._cancelled = False

    def waiting(self) -> None:
        self._task = asyncio.current_task()  # the stream may be read by one task, then another
        self._since = self._loop.time()
        if self._handle is None:
            self._handle = self._loop.call_at(self._since + self._timeout, self._check)

    def idle(self) -> None:
        self._since = None

    def fired(self) -> bool:
        """Whether the cancellation being handled is this timer's (and take it back)."""
        if not self._cancelled or self._task is None:
            return False
        self._cancelled = False
        return self._task.uncancel() == 0

    def stop(self) -> None:
        self.fired()  # a cancellation of ours that the upstream turned into another error
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        now, since = self._loop.time(), self._since
        if since is not None and now - since >= self._timeout and self._task is not None:
            self._handle = None
            self._cancelled = True
            self._task.cancel()
            return
        due = (since if since is not None else now) + self._timeout
        self._handle = self._loop.call_at(due, self._check)
