"""The gateway in front of a real vLLM server (the tiny reasoning model), `openai` provider.

The engine's own answer, asked directly, is the reference: the gateway must report the same
usage, hide the reasoning completely, and still count every reasoning token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from fairgate.gateway.config import parse_config
from fairgate.metering.timestamps import parse_time
from tests.support.gateway_server import GatewayServer
from tests.support.tiny_reasoner import (
    CHAT_TEMPLATE,
    REASONING_TEXT,
    THINK_END,
    THINK_START,
    build_tiny_reasoner,
)
from tests.support.vllm_server import VllmServer, start_vllm_server

pytestmark = pytest.mark.e2e

START_ID, END_ID = 1024, 1025
MESSAGES = [{"role": "user", "content": "What is the answer to everything?"}]
# Three-word runs of the reasoning: a top-logprob alternative is one token, never a run.
_WORDS = REASONING_TEXT.split()
REASONING_PHRASES = [" ".join(_WORDS[i : i + 3]) for i in range(len(_WORDS) - 2)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    model_dir = build_tiny_reasoner()
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with start_vllm_server(model_dir, log_path=log, served_model_name="tiny-upstream") as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    engine: VllmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    model_dir = str(build_tiny_reasoner())
    config = parse_config(
        {
            "data_dir": str(tmp_path_factory.mktemp("gateway")),
            "tenants": [{"name": "alice", "api_keys": ["sk-alice"]}],
            "models": [
                {
                    "name": "tiny",
                    "provider": "openai",
                    "endpoints": [engine.base_url],
                    "tokenizer": model_dir,
                    "reasoning": "hidden",
                },
                {
                    "name": "tiny-visible",
                    "provider": "openai",
                    "endpoints": [engine.base_url],
                    "tokenizer": model_dir,
                    "reasoning": "visible",
                },
            ],
        }
    )
    with GatewayServer(config) as server:
        yield server


def _direct(engine: VllmServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    body = {**body, "model": "tiny-upstream", "return_token_ids": True}
    response = httpx.post(engine.url(path), json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def _client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key="sk-alice", max_retries=0, timeout=60
    )


def _reasoning_ids(token_ids: list[int]) -> list[int]:
    return token_ids[token_ids.index(START_ID) + 1 : token_ids.index(END_ID)]


def test_usage_equals_the_engines_own_counts(engine: VllmServer, gateway: GatewayServer) -> None:
    direct = _direct(engine, "/v1/chat/completions", {"messages": MESSAGES})
    completion = _client(gateway).chat.completions.create(model="tiny", messages=MESSAGES)
    engine_usage = direct["usage"]
    usage = completion.usage
    assert usage.prompt_tokens == engine_usage["prompt_tokens"]
    assert usage.completion_tokens == engine_usage["completion_tokens"]
    reasoning = engine_usage["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning == len(_reasoning_ids(direct["choices"][0]["token_ids"])) > 0
    assert usage.completion_tokens_details.reasoning_tokens == reasoning
    assert completion.choices[0].message.content == direct["choices"][0]["message"]["content"]
    assert completion.model_extra["receipt"]["leaves"] == reasoning


@pytest.mark.parametrize("stream", [False, True])
def test_hidden_reasoning_is_never_sent(
    engine: VllmServer, gateway: GatewayServer, stream: bool
) -> None:
    direct = _direct(engine, "/v1/chat/completions", {"messages": MESSAGES})
    token_ids = direct["choices"][0]["token_ids"]
    content_ids = set(token_ids[token_ids.index(END_ID) + 1 :])
    # ids that only the reasoning uses; one used in both parts tells nothing
    hidden_ids = (set(_reasoning_ids(token_ids)) | {START_ID, END_ID}) - content_ids
    body: dict[str, Any] = {
        "model": "tiny",
        "messages": MESSAGES,
        "stream": stream,
        "logprobs": True,
        "top_logprobs": 2,
        "return_token_ids": True,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    with httpx.Client(
        base_url=gateway.base_url, timeout=60, headers={"Authorization": "Bearer sk-alice"}
    ) as http:
        raw = http.post("/v1/chat/completions", json=body).content.decode()
    assert THINK_START not in raw and THINK_END not in raw
    for phrase in REASONING_PHRASES:
        assert phrase not in raw, f"reasoning {phrase!r} leaked"
    payloads = _payloads(raw, stream)
    returned: list[int] = []
    logprob_tokens: list[str] = []
    for payload in payloads:
        for choice in payload.get("choices", []):
            returned.extend(choice.get("token_ids") or [])
            entries = (choice.get("logprobs") or {}).get("content") or []
            logprob_tokens.extend(entry["token"] for entry in entries)
    assert returned and not set(returned) & hidden_ids
    # one logprob entry per visible token, and together they spell the visible text only
    assert len(logprob_tokens) == len(returned)
    assert "".join(logprob_tokens).startswith(direct["choices"][0]["message"]["content"])
    usage = next(p["usage"] for p in reversed(payloads) if p.get("usage"))
    reasoning = direct["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == reasoning


def test_streaming_sync_and_async_clients(gateway: GatewayServer) -> None:
    stream = _client(gateway).chat.completions.create(
        model="tiny", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "42" in text and THINK_START not in text
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens > 0

    async def run() -> str:
        api = openai.AsyncOpenAI(
            base_url=gateway.base_url + "/v1", api_key="sk-alice", max_retries=0, timeout=60
        )
        streamed = await api.chat.completions.create(
            model="tiny-visible", messages=MESSAGES, stream=True
        )
        reasoning = []
        async for chunk in streamed:
            if chunk.choices:
                reasoning.append((chunk.choices[0].delta.model_extra or {}).get("reasoning") or "")
        return "".join(reasoning)

    import asyncio

    assert REASONING_PHRASES[0] in asyncio.run(run())


def test_completions_with_a_raw_thinking_prompt(engine: VllmServer, gateway: GatewayServer) -> None:
    prompt = _render(MESSAGES)
    direct = _direct(engine, "/v1/completions", {"prompt": prompt, "max_tokens": 64})
    assert THINK_START in direct["choices"][0]["text"]
    expected = len(_reasoning_ids(direct["choices"][0]["token_ids"]))
    api = _client(gateway)
    completion = api.completions.create(model="tiny", prompt=prompt, max_tokens=64)
    text = completion.choices[0].text
    assert THINK_START not in text and not any(p in text for p in REASONING_PHRASES)
    assert "42" in text
    assert completion.usage.completion_tokens_details.reasoning_tokens == expected
    assert completion.usage.completion_tokens == direct["usage"]["completion_tokens"]
    streamed = "".join(
        c.choices[0].text
        for c in api.completions.create(model="tiny", prompt=prompt, max_tokens=64, stream=True)
        if c.choices
    )
    assert streamed == text
    visible = api.completions.create(model="tiny-visible", prompt=prompt, max_tokens=64)
    assert visible.choices[0].text == direct["choices"][0]["text"]


def test_cached_tokens_on_a_repeated_long_prompt(gateway: GatewayServer) -> None:
    long = [{"role": "user", "content": " ".join(["the quick brown fox jumps"] * 90)}]
    api = _client(gateway)
    first = api.chat.completions.create(model="tiny", messages=long, max_tokens=8)
    second = api.chat.completions.create(model="tiny", messages=long, max_tokens=8)
    assert first.usage.prompt_tokens > 256
    assert second.usage.prompt_tokens_details.cached_tokens >= 128
    assert second.usage.prompt_tokens_details.cached_tokens > (
        first.usage.prompt_tokens_details.cached_tokens
    )
    # the engine's real cache hits reached the scheduler, correcting its prompt charges
    replicas = gateway.runtime.scheduler.stats().replicas
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert sum(r.cached_tokens for r in replicas.values()) >= cached


def test_oversize_prompt_is_a_400(gateway: GatewayServer) -> None:
    huge = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gateway).chat.completions.create(model="tiny", messages=huge)
    assert caught.value.code == "context_length_exceeded"


@pytest.mark.timeout(400)
def test_client_disconnect_is_recorded_once(gateway: GatewayServer) -> None:
    body = {
        "model": "tiny",
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": 2000,
        "ignore_eos": True,
    }
    for _ in range(3):
        record, left = _leave_after_one_line(gateway, body)
        whole = record["usage"]["completion_tokens"] == body["max_tokens"]
        if parse_time(record["finished_at"]) < left or whole:
            # The engine had made the whole answer before the gateway could see the client
            # leave: the gateway and this client share one process, and a stalled machine
            # (CI: the loop woke 5-8 s late) lets the tiny model finish first. Again.
            print(f"the answer ended before the client left: {record['status']}")
            continue
        assert record["status"] == "client_disconnected", (record["usage"], record["status"])
        assert record["usage"]["completion_tokens"] > 0
        return
    raise AssertionError("three answers all ended before the client could leave")


def _leave_after_one_line(gateway: GatewayServer, body: dict[str, Any]) -> tuple[dict, float]:
    """Read one line of a streamed answer and leave; the request's one record, and when the
    client left (unix seconds)."""
    with (
        httpx.Client(
            base_url=gateway.base_url, timeout=60, headers={"Authorization": "Bearer sk-alice"}
        ) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        request_id = response.headers["x-request-id"]
        for _ in response.iter_lines():
            break
    left_at, left = time.time(), time.monotonic()
    found = _record_within(gateway, request_id, 30)
    if not found:  # say whether it is late (the disconnect went unnoticed) or lost
        late = [(r["status"], r["usage"]) for r in _record_within(gateway, request_id, 90)]
        waited = time.monotonic() - left
        assert found, f"no record 30 s after the client left; after {waited:.0f} s: {late}"
    assert len(found) == 1
    return found[0], left_at


def _record_within(gateway: GatewayServer, request_id: str, seconds: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [r for r in gateway.records() if r["request_id"] == request_id]
        if found:
            return found
        time.sleep(0.2)
    return []


def _render(messages: list[dict[str, str]]) -> str:
    from jinja2 import Template

    return Template(CHAT_TEMPLATE).render(
        messages=messages, add_generation_prompt=True, bos_token=""
    )


def _payloads(text: str, stream: bool) -> list[dict[str, Any]]:
    if not stream:
        return [json.loads(text)]
    lines = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]
