"""``POST /v1/responses``: the OpenAI Responses API as a translation onto chat.

The body is translated into a chat completions body and admitted exactly like chat, so one
``Generation`` does the gateway's work: the scheduler orders it, the meter attributes it by
token ids, hidden reasoning is dropped before anything is rendered, and it ends in one signed
ledger record whose receipt is in the response. Only the shapes differ (responses_render.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from fairgate.gateway.api import admit, event_stream, finished, started
from fairgate.gateway.errors import APIError, ContextTooLong, InvalidRequest, UpstreamError
from fairgate.gateway.event_stream import KEEPALIVE
from fairgate.gateway.generation import Generation, Visible
from fairgate.gateway.responses_render import EventStream, ResponseShape, sse_event
from fairgate.gateway.responses_schemas import ResponsesBody, parse

router = APIRouter()
log = logging.getLogger("fairgate.responses")


class _Translation:
    """Translates the body for ``admit`` and keeps it, for echoing settings in the response."""

    def __init__(self) -> None:
        self.body: ResponsesBody | None = None

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        self.body = parse(data)
        return self.body.chat_body()


@router.post("/v1/responses")
async def create_response(request: Request) -> Response:
    translation = _Translation()
    try:
        generation = await admit(request, "chat", translation)
    except ContextTooLong as error:
        error.param = "input"
        raise
    if translation.body is None:  # pragma: no cover - admit translates before it returns
        raise InvalidRequest("the request body was not translated")
    shape = ResponseShape(
        suffix=generation.request_id.removeprefix("req_"),
        model=generation.model.name,
        created=int(generation.started_at),
        body=translation.body,
    )
    headers = {"x-request-id": generation.request_id}
    if translation.body.stream:
        return await _stream(request, generation, shape, headers)
    return await _complete(request, generation, shape, headers)


async def _complete(
    request: Request, generation: Generation, shape: ResponseShape, headers: dict[str, str]
) -> Response:
    pieces, outcome = await finished(request, generation, headers)
    return JSONResponse(shape.complete(pieces, outcome), headers=headers)


async def _stream(
    request: Request, generation: Generation, shape: ResponseShape, headers: dict[str, str]
) -> Response:
    stream, first = await started(request, generation, headers)
    return event_stream(_events(generation, EventStream(shape), stream, first), headers)


async def _events(
    generation: Generation,
    events: EventStream,
    stream: AsyncGenerator[list[Visible], None],
    first: list[Visible] | None,
) -> AsyncIterator[bytes]:
    """Each piece goes out as soon as it exists; the last event waits for the ledger record, so
    that it can carry the usage and the receipt. A failure ends the stream with events, never a
    cut connection."""
    failure: APIError | None = None
    try:
        for event in events.start():
            yield sse_event(event)
        read = first
        while read is not None:
            data = b"".join(sse_event(event) for visible in read for event in events.piece(visible))
            if data:
                yield data
            elif not read:
                yield KEEPALIVE
            read = await anext(stream, None)
    except APIError as error:
        failure = error
    except Exception:
        log.exception("response %s failed while streaming", generation.request_id)
        failure = UpstreamError(f"The server had an error processing {generation.request_id}.")
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()
    outcome = generation.outcome
    closing = events.fail(failure, outcome) if failure else None
    if closing is None and outcome is not None:
        closing = events.finish(outcome)
    for event in closing or []:
        yield sse_event(event)
