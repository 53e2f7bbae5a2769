"""The ``openai`` provider: an existing OpenAI-compatible server (e.g. ``vllm serve``).

The gateway always streams from upstream, asking for token ids and usage, so it sees every
token whether or not its own client streams. The stream is read with ``upstream_http`` (a
small client on httptools' C parser; httpx's pure-Python h11 cost about 1 ms of CPU per
32-token stream, aiohttp's machinery about 0.2 ms more than it) on one pool of keep-alive
connections per replica, which also carries the health probes; the engine's metrics stay on
httpx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from fairgate.replicas import engine_chunks
from fairgate.replicas.base import EngineLoad
from fairgate.replicas.engine_chunks import completion_logprobs_to_chat
from fairgate.replicas.engine_metrics import scrape_engine_metrics
from fairgate.replicas.errors import ReplicaFailed, ReplicaRejected, ReplicaUnavailable
from fairgate.replicas.sse import sse_batches
from fairgate.replicas.stream import (
    EngineDelta,
    EngineEvent,
    EnginePrompt,
    EngineRequest,
    EngineUsage,
    Part,
)
from fairgate.replicas.upstream_http import ConnectFailed, HttpPool, Response, UpstreamBroken

_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
_KEEPALIVE_S = 4.0
_CONNECT_TIMEOUT_S, _READ_TIMEOUT_S = 5.0, 600.0
_HEALTH_TIMEOUT_S = 5.0  # a whole probe, as with httpx before
_JSON_BODY = {"Content-Type": "application/json"}
_decode = msgspec.json.Decoder().decode  # about 7x json.loads on an engine's chunk
_encode = msgspec.json.Encoder().encode


class OpenAIReplica:
    """One upstream server; ``url`` is its base URL without ``/v1``."""

    def __init__(
        self,
        replica_id: str,
        model: str,
        url: str,
        *,
        api_key: str | None = None,
        client: httpx.AsyncClient | None = None,
        extensions: bool = True,
    ) -> None:
        self.replica_id = replica_id
        self.model = model
        self.url = url.rstrip("/")
        self._prefix = urlsplit(self.url).path  # a base URL may have a path before /v1
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(connect=5.0, read=600.0, write=30.0, pool=30.0)
        )
        auth = self._client.headers.get("authorization")
        self._stream_headers = {"Authorization": auth} if auth else {}
        self._session: HttpPool | None = None
        # vLLM's extension: token ids per chunk (exact attribution of hidden tokens). Turned
        # off for good the first time an upstream refuses it.
        self.extensions = extensions

    async def stream(self, request: EngineRequest) -> AsyncGenerator[EngineEvent, None]:
        async with aclosing(self.stream_reads(request)) as reads:
            async for events in reads:
                for event in events:
                    yield event

    async def stream_reads(self, request: EngineRequest) -> AsyncGenerator[list[EngineEvent], None]:
        """``stream``, one list per upstream read: the events that arrived together (every
        delta but the list's last marked ``more``), so that the gateway handles them at once."""
        try:
            async with aclosing(self._reads(request, self.extensions)) as reads:
                async for events in reads:
                    yield events
        except ReplicaRejected as rejected:
            if not (self.extensions and _refuses_extensions(rejected)):
                raise
            self.extensions = False
            async with aclosing(self._reads(request, False)) as reads:
                async for events in reads:
                    yield events

    def _streams(self) -> HttpPool:
        if self._session is None or self._session.closed:
            # Under the 5 s after which vLLM's server (uvicorn) closes an idle connection: a
            # pooled connection older than that breaks the next request's write.
            self._session = HttpPool(
                self.url,
                headers=self._stream_headers,
                keepalive_s=_KEEPALIVE_S,
                connect_timeout_s=_CONNECT_TIMEOUT_S,
                read_timeout_s=_READ_TIMEOUT_S,
            )
        return self._session

    async def _reads(
        self, request: EngineRequest, extensions: bool
    ) -> AsyncGenerator[list[EngineEvent], None]:
        body = dict(request.body)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        if extensions:
            body["return_token_ids"] = True
        started = finished = False
        try:
            opened = await self._post(
                self._prefix + _PATHS[request.endpoint],
                _encode(body),
                {**_JSON_BODY, "x-request-id": request.request_id},
            )
            async with opened as response:
                if response.status >= 400:
                    await self._raise_for(response.status, await response.read())
                async for batch in sse_batches(response.chunks()):
                    events, broken = self._read(batch, request.endpoint)
                    for event in events:
                        if type(event) is EngineDelta:
                            started, finished = True, finished or bool(event.finish_reason)
                    if events:
                        yield events
                    if broken is not None:
                        raise broken
                if not finished:  # a body closed cleanly mid-answer is not a whole answer
                    raise (ReplicaFailed if started else ReplicaUnavailable)(
                        f"stream from {self.replica_id} ended before its finish_reason",
                        replica_id=self.replica_id,
                    )
        except ConnectFailed as error:
            raise ReplicaUnavailable(
                f"cannot reach {self.url}: {error}", replica_id=self.replica_id
            ) from None
        except (UpstreamBroken, TimeoutError, ValueError) as error:
            kind = ReplicaFailed if started else ReplicaUnavailable
            raise kind(
                f"stream from {self.replica_id} broke: {error!r}", replica_id=self.replica_id
            ) from None

    async def _post(self, path: str, data: bytes, headers: dict[str, str]) -> Response:
        """POST; ``HttpPool.post`` sends once more on a new connection when a pooled one turns
        out closed by the server before any answer came (nothing ran, so nothing runs twice)."""
        return await self._streams().post(path, data, headers)

    async def _raise_for(self, status: int, raw: bytes) -> None:
        message = raw.decode("utf-8", "replace")[:2000]
        param = code = None
        try:
            error = json.loads(raw).get("error") or {}
            if isinstance(error, dict):
                message = str(error.get("message") or message)
                param, code = error.get("param"), error.get("code")
        except (ValueError, AttributeError):
            pass
        if 400 <= status < 500 and status not in (408, 429):
            raise ReplicaRejected(
                message,
                status=status,
                param=param,
                code=code if isinstance(code, str) else None,
                replica_id=self.replica_id,
            )
        raise ReplicaUnavailable(
            f"{self.replica_id} answered {status}: {message}",
            replica_id=self.replica_id,
        )

    def _read(
        self, batch: list[bytes], endpoint: str
    ) -> tuple[list[EngineEvent], Exception | None]:
        """The events of one read, every delta but the last marked ``more``, and the error
        that cut it short: the events before a broken one still reach the client."""
        events: list[EngineEvent] = []
        broken: Exception | None = None
        for data in batch:
            try:
                found = engine_chunks.events(data, endpoint, self.replica_id)
                if found is None:  # not the common shape: the dict reader
                    payload = _payload(data)
                    if isinstance(payload, ValueError):
                        broken = payload
                        break
                    found = self._events(payload, endpoint)
            except ReplicaFailed as error:
                broken = error
                break
            events.extend(found)
        last: EngineDelta | None = None
        for event in events:
            if type(event) is EngineDelta:
                if last is not None:
                    last.more = True
                last = event
        return events, broken

    def _events(self, payload: dict[str, Any], endpoint: str) -> list[EngineEvent]:
        if "error" in payload and not payload.get("choices"):
            error = payload["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise ReplicaFailed(f"engine error: {message}", replica_id=self.replica_id)
        events: list[EngineEvent] = []
        choices = payload.get("choices") or []
        prompt_ids = payload.get("prompt_token_ids")
        if prompt_ids is None and choices:
            prompt_ids = choices[0].get("prompt_token_ids")
        if prompt_ids:
            events.append(EnginePrompt(tuple(prompt_ids)))
        usage = payload.get("usage")
        if usage:
            events.append(_usage(usage))
        for choice in choices:
            events.extend(_deltas(choice, endpoint))
        return events

    async def check_health(self) -> bool:
        """On the streams' keep-alive pool, not httpx: a probe every few seconds per replica
        through httpx was most of an idle gateway's CPU."""
        try:
            async with asyncio.timeout(_HEALTH_TIMEOUT_S):
                status = await self._status_of("/health")
                if status == 404:
                    status = await self._status_of("/v1/models")
            return status == 200
        except (TimeoutError, ConnectFailed, UpstreamBroken):
            return False

    async def _status_of(self, path: str) -> int:
        async with await self._streams().get(self._prefix + path) as response:
            await response.read()  # to its end, so that the connection can be reused
            return response.status

    async def load(self) -> EngineLoad | None:
        reading = await scrape_engine_metrics(self._client, self.url)
        running = reading.get("fairgate_engine_requests_running") if reading else None
        waiting = reading.get("fairgate_engine_requests_waiting") if reading else None
        if running is None or waiting is None:
            return None
        return EngineLoad(int(running), int(waiting))

    async def aclose(self) -> None:
        await self.close_streams()
        await self._client.aclose()

    async def close_streams(self) -> None:
        """Close the pooled stream connections only (the httpx client may be the caller's)."""
        if self._session is not None:
            await self._session.close()


def _payload(data: bytes) -> Any:
    """The JSON of an event, or the error that says why it is not JSON."""
    try:
        return _decode(data)
    except msgspec.DecodeError:
        try:  # what msgspec refuses and json takes (NaN, say)
            return json.loads(data)
        except ValueError as error:
            return error


def _deltas(choice: dict[str, Any], endpoint: str) -> list[EngineEvent]:
    ids = tuple(choice.get("token_ids") or ())
    finish = choice.get("finish_reason")
    if endpoint == "chat":
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning") or delta.get("reasoning_content") or ""
        content = delta.get("content") or ""
        logprobs = ((choice.get("logprobs") or {}).get("content")) or []
    else:
        reasoning = ""
        content = choice.get("text") or ""
        logprobs = completion_logprobs_to_chat(choice.get("logprobs"))
    events: list[EngineEvent] = []
    if reasoning and content:
        # Several tokens across the end of the reasoning (an engine under load packs them).
        events.append(
            EngineDelta(content, Part.CONTENT, ids, list(logprobs), finish, reasoning=reasoning)
        )
    elif reasoning:
        events.append(EngineDelta(reasoning, Part.REASONING, ids, list(logprobs), finish))
    elif content or ids or finish:
        events.append(EngineDelta(content, Part.CONTENT, ids, list(logprobs), finish))
    return events


def _refuses_extensions(rejected: ReplicaRejected) -> bool:
    text = f"{rejected.param} {rejected.message}"
    return rejected.status == 400 and any(
        name in text for name in ("return_token_ids", "continuous_usage_stats")
    )


def _usage(usage: dict[str, Any]) -> EngineUsage:
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return EngineUsage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=prompt_details.get("cached_tokens"),
        reasoning_tokens=completion_details.get("reasoning_tokens"),
    )
