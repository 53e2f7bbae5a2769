"""The OpenAI-compatible endpoints: chat completions, completions, models."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from fairgate.gateway.auth import bearer_token
from fairgate.gateway.client_gone import ClientGone, ClientLeft
from fairgate.gateway.errors import (
    APIError,
    ContextTooLong,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    Unauthorized,
    invalid_request,
)
from fairgate.gateway.event_stream import KEEPALIVE, EventStream, LastPiece
from fairgate.gateway.generation import Generation, RequestOutcome, Visible, first_or_end
from fairgate.gateway.plain_route import PlainRoute
from fairgate.gateway.render import Renderer, sse
from fairgate.gateway.replica_set import ModelRuntime
from fairgate.gateway.runtime import Runtime
from fairgate.gateway.schemas import ChatBody, CompletionBody
from fairgate.metering.usage import Usage
from fairgate.replicas.stream import Endpoint

router = APIRouter()
T = TypeVar("T")
MAX_BODY_BYTES = 16 * 1024 * 1024
OVERHEAD_HEADER = "x-fairgate-overhead-ms"  # the gateway's own time (gateway.overhead)
DONE = b"data: [DONE]\n\n"
_decode = msgspec.json.Decoder().decode


async def chat_completions(request: Request) -> Response:
    return await _generate(request, "chat")


async def completions(request: Request) -> Response:
    return await _generate(request, "completions")


router.add_api_route(
    "/v1/chat/completions", chat_completions, methods=["POST"], route_class_override=PlainRoute
)
router.add_api_route(
    "/v1/completions", completions, methods=["POST"], route_class_override=PlainRoute
)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    authenticate(runtime, request)
    created = int(runtime.started_at)
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "fairgate",
                "max_model_len": model.max_model_len,
            }
            for name, model in runtime.models.items()
        ],
    }


def authenticate(runtime: Runtime, request: Request) -> str:
    token = bearer_token(request.headers.get("authorization"))
    tenant = runtime.keyring.lookup(token) if token else None
    if tenant is None:
        runtime.metrics.auth_failures.inc()
        message = (
            "Incorrect API key provided."
            if token
            else "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
        )
        raise Unauthorized(message)
    return tenant


async def _generate(request: Request, endpoint: Endpoint) -> Response:
    generation = await admit(request, endpoint)
    renderer = Renderer(
        endpoint,
        response_id=_response_id(endpoint, generation.request_id),
        model=generation.model.name,
        created=int(generation.started_at),
        body=generation.body,
    )
    headers = {"x-request-id": generation.request_id}
    if generation.body.get("stream"):
        return await _stream(request, generation, renderer, headers)
    return await _complete(request, generation, renderer, headers)


async def admit(
    request: Request,
    endpoint: Endpoint,
    translate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Generation:
    """Authenticate, validate and tokenize one request. ``translate`` turns another API's body
    into this endpoint's (the Responses API into chat). A failure is recorded, then raised."""
    # Straight from the scope: ``request.state`` costs an AttributeError on first use.
    runtime: Runtime = request.scope["app"].state.runtime
    request_id: str = request.scope["state"]["request_id"]
    started, started_at = time.monotonic(), time.time()
    tenant = authenticate(runtime, request)
    model_name = ""
    try:
        runtime.recorder.check_writable()
        data = await json_body(request)
        model = data.get("model")
        model_name = model if isinstance(model, str) else ""
        if translate is not None:
            data = translate(data)
        body = _validate(endpoint, data)
        model = runtime.models.get(body["model"])
        if model is None:
            raise ModelNotFound(f"The model '{body['model']}' does not exist.", param="model")
        prompt_ids = _prompt_ids(model, endpoint, body)
        _check_context(model, prompt_ids, body)
        await runtime.controls.admit(tenant, request_id, model, body, prompt_ids)
    except APIError as error:
        await runtime.recorder.record(
            request_id=request_id,
            tenant=tenant,
            model=model_name or "-",
            replica=None,
            status=error.ledger_status,
            status_code=error.status,
            started_at=started_at,
            usage=Usage(),
            duration=time.monotonic() - started,
        )
        raise
    return Generation(
        runtime,
        model,
        request_id=request_id,
        tenant=tenant,
        endpoint=endpoint,
        body=body,
        prompt_ids=prompt_ids,
        started=started,
        started_at=started_at,
    )


async def json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
    try:
        data = _decode(raw)
    except msgspec.DecodeError:
        data = _json_or_error(raw)  # what msgspec refuses and json takes (NaN), or its error
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data


def _json_or_error(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {error}") from None


def _validate(endpoint: Endpoint, data: dict[str, Any]) -> dict[str, Any]:
    schema = ChatBody if endpoint == "chat" else CompletionBody
    try:
        parsed = schema.model_validate(data)
    except ValidationError as error:
        raise invalid_request(error) from None
    return parsed.model_dump(exclude_none=True, mode="json")


def _prompt_ids(model: ModelRuntime, endpoint: Endpoint, body: dict[str, Any]) -> tuple[int, ...]:
    if endpoint == "chat":
        return tuple(model.tokenizer.encode_chat(body["messages"]))
    prompt = CompletionBody.model_validate(body).single_prompt()
    if isinstance(prompt, list):
        return tuple(int(t) for t in prompt)
    return tuple(model.tokenizer.encode(prompt))


def _check_context(model: ModelRuntime, prompt_ids: tuple[int, ...], body: dict[str, Any]) -> None:
    if model.max_model_len is None:
        return
    wanted = body.get("max_completion_tokens") or body.get("max_tokens") or 1
    if len(prompt_ids) + wanted > model.max_model_len:
        raise ContextTooLong(
            f"This model's maximum context length is {model.max_model_len} tokens. However, "
            f"you requested {len(prompt_ids) + wanted} tokens ({len(prompt_ids)} in the "
            f"messages, {wanted} in the completion). Please reduce the length of the "
            "messages or completion.",
            param="messages" if "messages" in body else "prompt",
        )


def _response_id(endpoint: Endpoint, request_id: str) -> str:
    suffix = request_id.removeprefix("req_")
    return f"chatcmpl-{suffix}" if endpoint == "chat" else f"cmpl-{suffix}"


async def or_disconnect(request: Request, work: Awaitable[T], watch: ClientGone | None = None) -> T:
    """Await ``work`` unless the client goes away first, in which case cancel it and raise
    ``ClientLeft``. ``watch``: the request's own ``ClientGone``, left open for the response
    (else one for this wait)."""
    own = watch is None
    gone = watch or ClientGone(request.receive)
    try:
        return await work
    except asyncio.CancelledError:
        if gone.absorb():
            raise ClientLeft from None
        raise
    finally:
        if own:
            gone.close()


async def finished(
    request: Request, generation: Generation, headers: dict[str, str]
) -> tuple[list[Visible], RequestOutcome]:
    """Run a non-streaming generation to its end (cancelled if the client goes), naming the
    replica that served it in ``headers``."""

    async def collect() -> list[Visible]:
        return [piece async for read in generation.run() for piece in read]

    pieces = await or_disconnect(request, collect())
    headers[OVERHEAD_HEADER] = f"{generation.upstream.overhead_ms(generation.started):.3f}"
    outcome = generation.outcome
    if outcome is None:  # pragma: no cover - run() always ends with an outcome
        raise InvalidRequest("the request ended without an outcome")
    if outcome.replica:
        headers["x-fairgate-replica"] = outcome.replica
    return pieces, outcome


async def started(
    request: Request,
    generation: Generation,
    headers: dict[str, str],
    watch: ClientGone | None = None,
) -> tuple[AsyncGenerator[list[Visible], None], list[Visible] | None]:
    """Start a streaming generation up to its first read: errors before it (no replica, a
    rejected request) stay HTTP errors. Names the replica in ``headers``."""
    stream = generation.run()
    first, has_first = await or_disconnect(request, first_or_end(stream), watch)
    headers[OVERHEAD_HEADER] = f"{generation.upstream.overhead_ms(generation.started):.3f}"
    if generation.replica:
        headers["x-fairgate-replica"] = generation.replica
    return stream, first if has_first else None


def event_stream(
    body: AsyncIterator[bytes], headers: dict[str, str], watch: ClientGone | None = None
) -> Response:
    return EventStream(body, headers, watch)


async def _complete(
    request: Request, generation: Generation, renderer: Renderer, headers: dict[str, str]
) -> Response:
    pieces, outcome = await finished(request, generation, headers)
    return JSONResponse(renderer.response(pieces, outcome), headers=headers)


async def _stream(
    request: Request, generation: Generation, renderer: Renderer, headers: dict[str, str]
) -> Response:
    watch = ClientGone(request.receive)  # one watch from the first read to the last byte
    try:
        stream, first = await started(request, generation, headers, watch)
    except BaseException:
        watch.close()
        raise
    return event_stream(_sse_body(generation, renderer, stream, first), headers, watch)


async def _sse_body(
    generation: Generation,
    renderer: Renderer,
    stream: AsyncGenerator[list[Visible], None],
    first: list[Visible] | None,
) -> AsyncIterator[bytes]:
    """The chunks of each upstream read go out together as soon as they exist; only the one
    carrying ``finish_reason`` waits for the ledger record, so that the stream's last chunk
    can carry the receipt."""
    final: dict[str, Any] | None = None
    opened = False
    try:
        read = first
        while read is not None:
            held: list[bytes] = []
            for visible in read:
                opening, opened = not opened, True
                # Only the first chunk carries the prompt's ids.
                prompt_ids = (generation.engine_prompt or generation.prompt_ids) if opening else ()
                if final is not None:
                    held.append(sse(final))
                    final = None
                if visible.finish_reason:
                    final = renderer.chunk(visible, first=opening, prompt_ids=prompt_ids)
                else:
                    held.append(renderer.chunk_bytes(visible, first=opening, prompt_ids=prompt_ids))
            if held:
                yield b"".join(held)
            elif not read:
                yield KEEPALIVE
            read = await anext(stream, None)
    except APIError as error:
        yield LastPiece((sse(final) if final is not None else b"") + sse(error.body()))
        return
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()
    outcome = generation.outcome
    if outcome is None:  # pragma: no cover - run() always ends with an outcome
        return
    if final is None:
        final = renderer.chunk(
            Visible(finish_reason=outcome.finish_reason or "stop"),
            first=not opened,
            prompt_ids=outcome.prompt_token_ids,
        )
    if renderer.want_usage:
        yield LastPiece(sse(final) + sse(renderer.usage_chunk(outcome)) + DONE)
    else:
        if outcome.receipt is not None:
            final["receipt"] = outcome.receipt
        yield LastPiece(sse(final) + DONE)
