"""The upstream engine stand-in: one ``SimEngine`` behind an OpenAI-compatible HTTP server.

    python -m bench.peers.upstream --port 9101 [--slots 4] [--step-ms 25] ...

Every gateway under test forwards to the same two of these. It serves what a vLLM server
serves to a router: ``POST /v1/chat/completions`` (streaming with ``stream_options.include_usage``
and non-streaming, ``usage.prompt_tokens_details.cached_tokens``, vLLM's ``return_token_ids``
extension), ``GET /v1/models``, ``GET /health`` and ``GET /metrics`` with vLLM-style gauges
(``vllm:num_requests_running`` / ``vllm:num_requests_waiting``, the names routers and fairgate's
``openai`` provider read). The model is called ``sim``: it is a simulated engine, not vLLM.

For the benchmark only: ``GET /sim/stats`` (the engine's own totals) and ``POST /sim/reset``
(a cold cache and zeroed totals between runs; 409 while requests are in the engine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bench.peers.engine import MODEL, EngineSettings, Sequence, SimEngine

__all__ = ["MODEL", "create_app", "main"]

DEFAULT_MAX_TOKENS = 16


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param}}
    return JSONResponse(body, status_code=status)


def _usage(seq: Sequence) -> dict[str, Any]:
    return {
        "prompt_tokens": len(seq.prompt),
        "completion_tokens": seq.generated,
        "total_tokens": len(seq.prompt) + seq.generated,
        "prompt_tokens_details": {"cached_tokens": seq.cached},
    }


def create_app(engine: SimEngine) -> Starlette:
    tokenizer = engine.tokenizer

    def token_id(word: str) -> int:
        return tokenizer.encode(word)[0]

    async def chat(request: Request) -> Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "the body is not JSON")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty list", "messages")
        if body.get("model") not in (None, MODEL):
            return _error(404, f"model {body.get('model')!r} does not exist", "model")
        prompt = tuple(tokenizer.encode_chat(messages))
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
        seq = engine.submit(prompt, int(limit))
        response_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        with_ids = bool(body.get("return_token_ids"))
        if body.get("stream"):
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _sse(engine, seq, response_id, created, with_ids, with_usage, token_id)
            return StreamingResponse(events, media_type="text/event-stream")
        words = [word async for word in engine.stream(seq)]
        message = {"role": "assistant", "content": "".join(words)}
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "length"}
        reply: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion",
            "created": created,
            "model": MODEL,
            "choices": [choice],
            "usage": _usage(seq),
        }
        if with_ids:
            reply["prompt_token_ids"] = list(prompt)
            choice["token_ids"] = [token_id(w) for w in words]
        return JSONResponse(reply)

    async def models(_: Request) -> Response:
        model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "fairgate-bench-sim"}
        return JSONResponse({"object": "list", "data": [model]})

    async def health(_: Request) -> Response:
        return Response(status_code=200)

    async def metrics(_: Request) -> Response:
        label = f'{{model_name="{MODEL}"}}'
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {engine.num_running}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{label} {engine.num_waiting}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n")

    async def stats(_: Request) -> Response:
        totals = engine.stats
        return JSONResponse(
            {
                "running": engine.num_running,
                "waiting": engine.num_waiting,
                "requests": totals.requests,
                "prompt_tokens": totals.prompt_tokens,
                "cached_tokens": totals.cached_tokens,
                "generated_tokens": totals.generated_tokens,
                "cancelled": totals.cancelled,
            }
        )

    async def reset(_: Request) -> Response:
        if not engine.reset():
            return _error(409, "requests are still in the engine")
        return JSONResponse({"reset": True})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models),
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/sim/stats", stats),
            Route("/sim/reset", reset, methods=["POST"]),
        ]
    )


async def _sse(
    engine: SimEngine,
    seq: Sequence,
    response_id: str,
    created: int,
    with_ids: bool,
    with_usage: bool,
    token_id: Any,
) -> AsyncIterator[str]:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": choices,
            **extra,
        }
        if with_usage and "usage" not in body:
            body["usage"] = None
        return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"

    position = 0
    first = True
    async for word in engine.stream(seq):
        delta: dict[str, Any] = {"content": word}
        if first:
            delta = {"role": "assistant", "content": word}
        position += 1
        done = position >= seq.max_tokens
        choice: dict[str, Any] = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": "length" if done else None,
        }
        extra: dict[str, Any] = {}
        if with_ids:
            choice["token_ids"] = [token_id(word)]
            if first:
                extra["prompt_token_ids"] = list(seq.prompt)
        first = False
        yield chunk([choice], **extra)
    if with_usage:
        yield chunk([], usage=_usage(seq))
    yield "data: [DONE]\n\n"


async def _serve(port: int, settings: EngineSettings) -> None:
    engine = SimEngine(settings)
    engine.start()
    config = uvicorn.Config(
        create_app(engine),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        await engine.stop()


def main() -> None:
    defaults = EngineSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slots", type=int, default=defaults.slots)
    parser.add_argument("--step-ms", type=float, default=defaults.step_s * 1e3)
    parser.add_argument(
        "--prefill-us-per-token", type=float, default=defaults.prefill_s_per_token * 1e6
    )
    parser.add_argument("--prefill-chunk", type=int, default=defaults.prefill_chunk)
    parser.add_argument("--cache-tokens", type=int, default=defaults.cache_tokens)
    args = parser.parse_args()
    settings = EngineSettings(
        slots=args.slots,
        step_s=args.step_ms / 1e3,
        prefill_s_per_token=args.prefill_us_per_token / 1e6,
        prefill_chunk=args.prefill_chunk,
        cache_tokens=args.cache_tokens,
    )
    asyncio.run(_serve(args.port, settings))


if __name__ == "__main__":
    main()
