"""One generation, from admission to its ledger record.

    queued ──acquire──▶ running ──engine events──▶ finished
       │                   │  └─replica unavailable, nothing generated──▶ queued (elsewhere)
       └──────────── cancelled / failed ──────────────▶ finished

``Generation.run()`` yields what the client may see of each engine step, already split into
visible and hidden parts by the model's reasoning policy, one list per upstream read (the
steps that arrived together, so that a relay handles and sends them at once). Whatever
happens (success, engine failure, the client going away) it ends by recording exactly one
ledger record, shielded from cancellation, before the caller sends its last byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from fairgate.gateway.cancellation import to_the_end
from fairgate.gateway.errors import APIError, InvalidRequest, Unavailable, UpstreamError
from fairgate.gateway.guards import stall_guard, within
from fairgate.gateway.overhead import UpstreamClock
from fairgate.gateway.reasoning_budget import BudgetedMeter, make_meter
from fairgate.metering.meter import RequestMeter
from fairgate.metering.reasoning import Piece
from fairgate.metering.record import Status
from fairgate.replicas.base import Replica
from fairgate.replicas.errors import ReplicaFailed, ReplicaRejected, ReplicaUnavailable
from fairgate.replicas.stream import (
    Endpoint,
    EngineDelta,
    EngineEvent,
    EnginePrompt,
    EngineRequest,
    EngineUsage,
    Part,
    in_reads,
)

if TYPE_CHECKING:
    from fairgate.gateway.replica_set import ModelRuntime
    from fairgate.gateway.runtime import Runtime
    from fairgate.metering.usage import Usage

log = logging.getLogger("fairgate.generation")


@dataclass(slots=True)
class Visible:
    """What the client may see of one engine step."""

    text: str = ""
    reasoning: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass(slots=True)
class RequestOutcome:
    """How one request ended: what the recorder records and the renderers report."""

    status: str
    status_code: int
    usage: Usage
    receipt: dict[str, Any] | None
    replica: str | None
    finish_reason: str | None
    prompt_token_ids: tuple[int, ...]


class ReplicaDied(UpstreamError):
    ledger_status = Status.REPLICA_DIED


class Generation:
    def __init__(
        self,
        runtime: Runtime,
        model: ModelRuntime,
        *,
        request_id: str,
        tenant: str,
        endpoint: Endpoint,
        body: dict[str, Any],
        prompt_ids: tuple[int, ...],
        started: float,
        started_at: float,
    ) -> None:
        self.runtime = runtime
        self.model = model
        self.request_id = request_id
        self.tenant = tenant
        self.endpoint = endpoint
        self.body = body
        self.prompt_ids = prompt_ids
        self.started = started
        self.started_at = started_at
        self.meter = self._new_meter()
        self.engine_usage: EngineUsage | None = None
        self._sent_visible = False
        self.replica: str | None = None
        self.finish_reason: str | None = None
        self.outcome: RequestOutcome | None = None
        self._first_token_at: float | None = None
        self._last_token_at: float | None = None
        self._admitted_at: float | None = None
        self._beat_at = started  # when the client last got a byte or a keep-alive
        self.upstream = UpstreamClock()
        self._show_reasoning = model.config.reasoning == "visible"
        # Visible reasoning on legacy completions: the client sees the model's raw text.
        self._raw_text = endpoint == "completions" and self._show_reasoning

    def _new_meter(self) -> RequestMeter:
        meter = make_meter(
            self.runtime.controls.reasoning_budget(self.tenant),
            self.model.markers,
            self.runtime.recorder.committer(),
            self.model.tokenizer.encode,
            self.model.tokenizer.decode,
        )
        meter.prompt(self.prompt_ids)
        return meter

    @property
    def engine_prompt(self) -> tuple[int, ...]:
        return self.meter.prompt_ids

    async def run(self) -> AsyncGenerator[list[Visible], None]:
        status: str = Status.CLIENT_DISCONNECTED
        code = 499
        try:
            async for visible in self._attempts():
                yield visible
            status, code = Status.OK, 200
        except APIError as failure:
            status, code = failure.ledger_status, failure.status
            raise
        finally:
            await to_the_end(self._finish(status, code))

    async def _attempts(self) -> AsyncIterator[list[Visible]]:
        """Each try, on a replica not tried yet. An empty read is a keep-alive: nothing to
        show, but the client should hear that the request lives."""
        tried: set[str] = set()
        while True:
            acquire = within(
                self.runtime.dispatcher.acquire(
                    self.request_id,
                    self.tenant,
                    self.model.name,
                    self.prompt_ids,
                    self._max_tokens(),
                    frozenset(tried),
                ),
                self.runtime.controls.queue_timeout_s,
                self.model.name,
            )
            keepalive = self.runtime.controls.keepalive_s
            if not tried or keepalive is None:  # a first try waits before any byte is sent
                replica_id = await acquire
            else:  # a retry may wait behind long answers: beat while it does
                waiting = asyncio.ensure_future(acquire)
                try:
                    while not waiting.done():
                        await asyncio.wait((waiting,), timeout=keepalive)
                        if not waiting.done():
                            yield []
                finally:
                    await _cancelled(waiting)
                replica_id = waiting.result()
            self.replica = replica_id
            self._admitted_at = self._admitted_at or time.monotonic()
            try:
                async for visible in self._stream(self.model.replicas[replica_id]):
                    yield visible
                return
            except ReplicaUnavailable as failure:
                self.runtime.dispatcher.release(self.request_id)
                tried.add(replica_id)
                await self.runtime.replica_failed(self.model.name, replica_id, str(failure))
                if self._sent_visible or len(tried) >= len(self.model.replicas):
                    raise Unavailable(
                        f"no replica of model '{self.model.name}' could serve the request"
                    ) from None
                # The client saw nothing: start over, without billing the lost hidden tokens.
                self.meter, self.engine_usage = self._new_meter(), None
                self.runtime.metrics.retries.labels(self.model.name).inc()
                log.warning(
                    "request %s: replica %s unavailable, retrying elsewhere",
                    self.request_id,
                    replica_id,
                )

    async def _stream(self, replica: Replica) -> AsyncIterator[list[Visible]]:
        request = EngineRequest(
            self.request_id, self.endpoint, self._upstream_body(), self.prompt_ids
        )
        self.upstream.request_sent()
        reads = stall_guard(_reads(replica, request), self.runtime.controls.stall_timeout_s)
        try:
            async for events in reads:
                self.upstream.event()
                shown = self._on_read(events)
                if shown:
                    self._sent_visible = True
                    yield shown
                elif self._beat_due():
                    yield []
                if isinstance(self.meter, BudgetedMeter) and self.meter.cut:
                    self.finish_reason = "length"  # the tenant's max_reasoning_tokens
                    break
            self.upstream.ended()
            tail = self._shown(self.meter.flush(), None)
            if tail is not None and not self._raw_text:
                yield [tail]
        except ReplicaRejected as rejected:
            raise InvalidRequest(
                rejected.message, param=rejected.param, code=rejected.code
            ) from None
        except ReplicaFailed as failure:
            if not self._sent_visible:  # only hidden reasoning so far: retry elsewhere
                raise ReplicaUnavailable(failure.message, replica_id=failure.replica_id) from None
            raise ReplicaDied(
                f"the replica serving this request failed: {failure.message}"
            ) from None
        finally:
            # Not to_the_end: a close that hangs on a dead upstream must stay cuttable by the
            # stall watch (with it fully shielded, a killed engine's stream never got its error
            # event in CI: test_killed_engine_fails_its_streams_cleanly_and_comes_back).
            with anyio.CancelScope(shield=True):
                await reads.aclose()

    def _beat_due(self) -> bool:
        """Whether a read with nothing to show (hidden reasoning) should go out as a
        keep-alive: the client has heard nothing for ``keepalive_s``."""
        keepalive, now = self.runtime.controls.keepalive_s, time.monotonic()
        if self._sent_visible or keepalive is None or now - self._beat_at < keepalive:
            return False
        self._beat_at = now
        return True

    def _on_read(self, events: list[EngineEvent]) -> list[Visible]:
        """What the client may see of one upstream read; the scheduler and the token
        histograms see the read once."""
        shown: list[Visible] = []
        generated = 0
        for event in events:
            if type(event) is EngineDelta:
                generated += len(event.token_ids) or (1 if event.text else 0)
                visible = self._on_delta(event)
                if visible is not None:
                    shown.append(visible)
                if isinstance(self.meter, BudgetedMeter) and self.meter.cut:
                    break
            elif type(event) is EnginePrompt:
                self.meter.prompt(event.token_ids)
            elif type(event) is EngineUsage:
                self.engine_usage = event
        if generated:
            self._on_tokens(generated, time.monotonic())
        return shown

    def _on_delta(self, delta: EngineDelta) -> Visible | None:
        ids = list(delta.token_ids)
        piece = self.meter.step(
            delta.text,
            ids,
            delta.logprobs,
            engine_reasoning=delta.part is Part.REASONING,
            reasoning_text=delta.reasoning,
        )
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        if self._raw_text:
            return Visible(delta.text, "", ids, list(delta.logprobs), delta.finish_reason)
        return self._shown(piece, delta.finish_reason)

    def _on_tokens(self, generated: int, now: float) -> None:
        metrics, labels = self.runtime.metrics, (self.tenant, self.model.name)
        if self._first_token_at is None:
            self._first_token_at = now
            metrics.observe_first_token(*labels, now - self.started)
        elif self._last_token_at is not None:
            metrics.observe_inter_token(*labels, (now - self._last_token_at) / generated)
        self._last_token_at = now
        self.runtime.dispatcher.tokens(self.request_id, generated)

    def _shown(self, piece: Piece, finish: str | None) -> Visible | None:
        shown = Visible(piece.visible_text, "", piece.visible_ids, piece.visible_logprobs, finish)
        if self._show_reasoning:
            shown.reasoning = piece.hidden_text
            shown.token_ids = piece.hidden_ids + piece.visible_ids
        if shown.text or shown.reasoning or shown.token_ids or shown.finish_reason:
            return shown
        return None

    def _upstream_body(self) -> dict[str, Any]:
        body = {k: v for k, v in self.body.items() if k not in ("stream_options", "user")}
        body["model"] = self.model.upstream_model
        return body

    def _max_tokens(self) -> int:
        value = self.body.get("max_completion_tokens") or self.body.get("max_tokens")
        return int(value) if value else self.model.default_max_tokens

    async def _finish(self, status: str, code: int) -> None:
        if self.outcome is not None:
            return
        engine = self.engine_usage
        usage, disagreements = self.meter.usage(engine, len(self.prompt_ids))
        for item in disagreements:
            self.runtime.disagreement(
                self.request_id, self.model.name, item.field, ours=item.ours, engine=item.engine
            )
        self.runtime.dispatcher.finish(self.request_id, engine.cached_tokens if engine else None)
        now = time.monotonic()
        await self.runtime.controls.settle(self.request_id, usage)
        receipt = await self.runtime.recorder.record(
            request_id=self.request_id,
            tenant=self.tenant,
            model=self.model.name,
            replica=self.replica,
            status=status,
            status_code=code,
            started_at=self.started_at,
            usage=usage,
            committer=self.meter.committer,
            duration=now - self.started,
            queue_wait=(self._admitted_at - self.started) if self._admitted_at else None,
        )
        self.outcome = RequestOutcome(
            status,
            code,
            usage,
            receipt,
            self.replica,
            self.finish_reason,
            self.meter.prompt_ids or self.prompt_ids,
        )


async def _cancelled(task: asyncio.Future[str]) -> None:
    """Cancel ``task`` if it is still waiting, and let its own clean-up (the dispatcher
    forgetting the queued job) run before the generation records its end."""
    if task.done():
        return
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


def _reads(replica: Replica, request: EngineRequest) -> AsyncGenerator[list[EngineEvent], None]:
    stream_reads = getattr(replica, "stream_reads", None)  # providers that read in batches
    if stream_reads is not None:
        reads: AsyncGenerator[list[EngineEvent], None] = stream_reads(request)
        return reads
    return in_reads(replica.stream(request))


async def first_or_end(
    iterator: AsyncIterator[list[Visible]],
) -> tuple[list[Visible] | None, bool]:
    """The first read, and whether there was one; errors surface before any byte is sent."""
    try:
        return await iterator.__anext__(), True
    except StopAsyncIteration:
        return None, False
