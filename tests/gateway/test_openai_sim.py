"""The official OpenAI client against the gateway, on the sim provider."""

from __future__ import annotations

import json

import httpx
import pytest

from fairgate.replicas.sim import REASONING_WORDS
from tests.gateway.conftest import async_client, client, one_record
from tests.support.gateway_server import GatewayServer

MESSAGES = [{"role": "user", "content": "Tell me something about fair scheduling."}]
SIM_REASONING, SIM_CONTENT = 8, 12


def _usage_dict(usage: object) -> dict:
    data = usage.model_dump()  # type: ignore[attr-defined]
    return {
        "prompt_tokens": data["prompt_tokens"],
        "completion_tokens": data["completion_tokens"],
        "total_tokens": data["total_tokens"],
        "prompt_tokens_details": {"cached_tokens": data["prompt_tokens_details"]["cached_tokens"]},
        "completion_tokens_details": {
            "reasoning_tokens": data["completion_tokens_details"]["reasoning_tokens"]
        },
    }


def test_chat_sync_non_streaming(gateway: GatewayServer) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="sim-hidden", messages=MESSAGES
    )
    completion = raw.parse()
    request_id = raw.headers["x-request-id"]
    assert raw.headers["x-fairgate-replica"].startswith("sim-hidden-sim-")
    usage = completion.usage
    assert usage.completion_tokens_details.reasoning_tokens == SIM_REASONING
    assert usage.completion_tokens == SIM_REASONING + SIM_CONTENT
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    content = completion.choices[0].message.content
    assert content and not any(word in content for word in REASONING_WORDS)
    assert completion.choices[0].finish_reason == "stop"
    receipt = completion.model_extra["receipt"]
    assert receipt["request_id"] == request_id
    assert receipt["leaves"] == SIM_REASONING
    record = one_record(gateway, request_id)
    assert record["status"] == "ok" and record["tenant"] == "alice"
    assert record["usage"] == _usage_dict(usage)


def test_chat_sync_streaming_with_usage(gateway: GatewayServer) -> None:
    stream = client(gateway).chat.completions.create(
        model="sim-hidden", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and not any(word in text for word in REASONING_WORDS)
    assert chunks[0].choices[0].delta.role == "assistant"
    final = chunks[-1]
    assert final.choices == []
    assert final.usage.completion_tokens_details.reasoning_tokens == SIM_REASONING
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    record = one_record(gateway, final.model_extra["receipt"]["request_id"])
    assert record["usage"] == _usage_dict(final.usage)


async def test_chat_async_streaming_and_not(gateway: GatewayServer) -> None:
    api = async_client(gateway, "sk-bob")
    completion = await api.chat.completions.create(model="sim-visible", messages=MESSAGES)
    message = completion.choices[0].message
    reasoning = message.model_extra["reasoning"]
    assert any(word in reasoning for word in REASONING_WORDS)
    assert completion.usage.completion_tokens_details.reasoning_tokens == SIM_REASONING
    stream = await api.chat.completions.create(model="sim-hidden", messages=MESSAGES, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.strip() == completion.choices[0].message.content.strip()


def test_completions_sync_and_streaming(gateway: GatewayServer) -> None:
    api = client(gateway)
    completion = api.completions.create(
        model="sim-hidden", prompt="Once upon a time", max_tokens=100
    )
    text = completion.choices[0].text
    assert "<think>" not in text and not any(word in text for word in REASONING_WORDS)
    # in-band markers on /v1/completions: hidden, counted as completion tokens, not reasoning
    assert completion.usage.completion_tokens_details.reasoning_tokens == SIM_REASONING
    assert completion.usage.completion_tokens == SIM_REASONING + SIM_CONTENT + 2
    streamed = "".join(
        c.choices[0].text
        for c in api.completions.create(model="sim-hidden", prompt="Once upon a time", stream=True)
        if c.choices
    )
    assert streamed == text


async def test_completions_async(gateway: GatewayServer) -> None:
    completion = await async_client(gateway).completions.create(
        model="sim-visible", prompt="Once upon a time"
    )
    assert "<think>" in completion.choices[0].text


def test_max_tokens_cuts_off_with_length(gateway: GatewayServer) -> None:
    completion = client(gateway).chat.completions.create(
        model="sim-hidden", messages=MESSAGES, max_tokens=SIM_REASONING + 3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == SIM_REASONING + 3


def test_cached_tokens_on_repeated_long_prompt(gateway: GatewayServer) -> None:
    long = [{"role": "user", "content": " ".join(f"word{i}" for i in range(200))}]
    api = client(gateway)
    first = api.chat.completions.create(model="sim-visible", messages=long)
    second = api.chat.completions.create(model="sim-visible", messages=long)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens >= 176


def test_models_list(gateway: GatewayServer) -> None:
    ids = [m.id for m in client(gateway).models.list()]
    assert ids == ["sim-hidden", "sim-visible", "sim-slow"]


@pytest.mark.parametrize("stream", [False, True])
def test_hidden_reasoning_never_reaches_the_client(gateway: GatewayServer, stream: bool) -> None:
    body = {
        "model": "sim-hidden",
        "messages": MESSAGES,
        "stream": stream,
        "logprobs": True,
        "top_logprobs": 3,
        "return_token_ids": True,
        "stream_options": {"include_usage": True},
    }
    if not stream:
        body.pop("stream_options")
    visible = dict(body, model="sim-visible", stream=False, logprobs=False)
    visible.pop("stream_options", None)
    with httpx.Client(
        base_url=gateway.base_url, headers={"Authorization": "Bearer sk-alice"}
    ) as http:
        shown = http.post("/v1/chat/completions", json=visible).json()
        raw = http.post("/v1/chat/completions", json=body).content
    reasoning_text = shown["choices"][0]["message"]["reasoning"]
    reasoning_ids = set(shown["choices"][0]["token_ids"]) - set(
        shown["choices"][0]["token_ids"][-SIM_CONTENT:]
    )
    assert reasoning_text and reasoning_ids
    text = raw.decode()
    for word in REASONING_WORDS:
        assert word not in text
    assert '"reasoning_tokens":8' in text
    returned: set[int] = set()
    for payload in _payloads(text, stream):
        for choice in payload.get("choices", []):
            returned.update(choice.get("token_ids") or [])
            for entry in (choice.get("logprobs") or {}).get("content") or []:
                assert not any(word in entry["token"] for word in REASONING_WORDS)
    assert returned and not returned & reasoning_ids


def _payloads(text: str, stream: bool) -> list[dict]:
    if not stream:
        return [json.loads(text)]
    lines = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]
