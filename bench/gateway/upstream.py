"""A fast OpenAI-compatible upstream: the same 32-token answer for every request, from bytes
rendered once, so that its own cost stays far below any proxy's.

    python -m bench.gateway.upstream --port 9201 [--token-gap-ms 0]

``POST /v1/chat/completions`` streams (``stream: true``) 8 reasoning tokens
(``delta.reasoning_content``, as vLLM's reasoning parser sends them) then 24 content tokens,
one chunk each with vLLM's ``token_ids`` (``prompt_token_ids`` on the first), then a usage
chunk (``stream_options.include_usage``) and ``[DONE]``. Every chunk is its own write; between
chunks the loop yields (``--token-gap-ms 0``) or sleeps. Non-streaming requests get the same
answer as one JSON body. Also ``GET /v1/models``, ``GET /health`` and ``GET /metrics`` with
vLLM's ``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` gauges.

HTTP/1.1 with keep-alive, parsed by httptools (the parser uvicorn uses), on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import httptools
import uvloop

MODEL = "bench"
REASONING_TOKENS = 8
CONTENT_TOKENS = 24
TOKENS = REASONING_TOKENS + CONTENT_TOKENS
PROMPT_IDS = list(range(100, 120))
LAST_WORD = f" c{CONTENT_TOKENS - 1}"  # the client checks that the answer arrived whole


def _sse(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def _usage() -> dict[str, Any]:
    return {
        "prompt_tokens": len(PROMPT_IDS),
        "completion_tokens": TOKENS,
        "total_tokens": len(PROMPT_IDS) + TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
    }


def stream_events(with_usage: bool) -> list[bytes]:
    """The SSE events of one streamed answer, in order."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0}
    base["model"] = MODEL
    events = []
    for position in range(TOKENS):
        reasoning = position < REASONING_TOKENS
        word = f" r{position}" if reasoning else f" c{position - REASONING_TOKENS}"
        delta: dict[str, Any] = {"reasoning_content": word} if reasoning else {"content": word}
        if position == 0:
            delta["role"] = "assistant"
        last = position == TOKENS - 1
        choice = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": "length" if last else None,
            "token_ids": [1000 + position],
        }
        chunk: dict[str, Any] = {**base, "choices": [choice]}
        if position == 0:
            chunk["prompt_token_ids"] = PROMPT_IDS
        if with_usage:
            chunk["usage"] = None
        events.append(_sse(chunk))
    if with_usage:
        events.append(_sse({**base, "choices": [], "usage": _usage()}))
    events.append(b"data: [DONE]\n\n")
    return events


def completion_body() -> bytes:
    reasoning = "".join(f" r{i}" for i in range(REASONING_TOKENS))
    content = "".join(f" c{i}" for i in range(CONTENT_TOKENS))
    message = {"role": "assistant", "content": content, "reasoning_content": reasoning}
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
        "usage": _usage(),
        "prompt_token_ids": PROMPT_IDS,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


class Upstream:
    """The server's shared state: pre-rendered answers and the in-flight count."""

    def __init__(self, token_gap_s: float) -> None:
        self.token_gap_s = token_gap_s
        self.with_usage = [_chunk(e) for e in stream_events(True)]
        self.without_usage = [_chunk(e) for e in stream_events(False)]
        self.completion = _response("200 OK", "application/json", completion_body())
        models = {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0}]}
        self.models = _response("200 OK", "application/json", json.dumps(models).encode())
        self.running = 0
        self.requests = 0

    def metrics(self) -> bytes:
        label = f'{{model_name="{MODEL}"}}'
        text = (
            f"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{label} "
            f"{self.running}\n# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{label} 0\n"
        )
        return _response("200 OK", "text/plain; version=0.0.4", text.encode())


class _Connection(asyncio.Protocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body = bytearray()
        self.queue: asyncio.Queue[tuple[bytes, bytes, bool, bytes]] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(_response("400 Bad Request", "text/plain", b"bad request"))
            self.transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        keep_alive = self.parser.should_keep_alive()
        self.queue.put_nowait((method, self.url, keep_alive, bytes(self.body)))
        self.url, self.body = b"", bytearray()

    async def _serve(self) -> None:
        assert self.transport is not None
        while True:
            method, url, keep_alive, body = await self.queue.get()
            path = url.split(b"?", 1)[0]
            if method == b"POST" and path == b"/v1/chat/completions":
                await self._chat(body)
            elif path == b"/v1/models":
                self.transport.write(self.upstream.models)
            elif path == b"/health":
                self.transport.write(_response("200 OK", "text/plain", b"ok"))
            elif path == b"/metrics":
                self.transport.write(self.upstream.metrics())
            else:
                self.transport.write(_response("404 Not Found", "text/plain", b"not found"))
            if not keep_alive:
                self.transport.close()
                return

    async def _chat(self, raw: bytes) -> None:
        assert self.transport is not None
        upstream = self.upstream
        upstream.requests += 1
        try:
            body = json.loads(raw)
        except ValueError:
            self.transport.write(_response("400 Bad Request", "application/json", b"{}"))
            return
        if not body.get("stream"):
            self.transport.write(upstream.completion)
            return
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = upstream.with_usage if usage else upstream.without_usage
        upstream.running += 1
        try:
            self.transport.write(_STREAM_HEAD)
            for event in events:
                await asyncio.sleep(upstream.token_gap_s)
                self.transport.write(event)
            self.transport.write(b"0\r\n\r\n")
        finally:
            upstream.running -= 1


async def serve(port: int, token_gap_s: float) -> None:
    upstream = Upstream(token_gap_s)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(upstream), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-gap-ms", type=float, default=0.0)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.token_gap_ms / 1e3))


if __name__ == "__main__":
    main()
