"""Response objects and stream chunks in the shapes the official SDK parses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from fairgate.gateway.generation import RequestOutcome, Visible
from fairgate.gateway.render import Renderer, sse
from fairgate.metering.usage import Usage

USAGE = Usage(prompt_tokens=7, cached_tokens=3, completion_tokens=5, reasoning_tokens=2)
RECEIPT = {"record_id": "r-1", "leaf_count": 2}


def outcome(**changes: object) -> RequestOutcome:
    fields: dict[str, object] = {
        "status": "ok", "status_code": 200, "usage": USAGE, "receipt": RECEIPT,
        "replica": "m-0", "finish_reason": "length", "prompt_token_ids": (1, 2, 3),
    }  # fmt: skip
    fields.update(changes)
    return RequestOutcome(**fields)  # type: ignore[arg-type]


def renderer(endpoint: str = "chat", **body: object) -> Renderer:
    return Renderer(endpoint, response_id="chatcmpl-1", model="m", created=1700000000, body=body)  # type: ignore[arg-type]


def test_chat_chunks_parse_and_carry_the_role_once() -> None:
    r = renderer(return_token_ids=True)
    first = r.chunk(Visible("Hel", token_ids=[5]), first=True, prompt_ids=(1, 2))
    later = r.chunk(Visible("lo", token_ids=[6], finish_reason="stop"), first=False)
    parsed = [ChatCompletionChunk.model_validate(c) for c in (first, later)]
    assert [p.choices[0].delta.role for p in parsed] == ["assistant", None]
    assert "".join(p.choices[0].delta.content or "" for p in parsed) == "Hello"
    assert parsed[1].choices[0].finish_reason == "stop"
    assert first["prompt_token_ids"] == [1, 2] and "prompt_token_ids" not in later
    assert later["choices"][0]["token_ids"] == [6]


def test_reasoning_appears_only_when_it_is_in_what_the_client_may_see() -> None:
    r = renderer()
    assert "reasoning" not in r.chunk(Visible("a"), first=True)["choices"][0]["delta"]
    assert r.chunk(Visible("", reasoning="hm"), first=False)["choices"][0]["delta"] == {
        "reasoning": "hm"
    }
    message = r.response([Visible("x")], outcome())["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "x"}


def test_usage_chunk_and_receipt() -> None:
    r = renderer(stream_options={"include_usage": True})
    assert r.chunk(Visible("a"), first=True)["usage"] is None
    last = r.usage_chunk(outcome())
    parsed = ChatCompletionChunk.model_validate(last)
    assert parsed.choices == []
    assert parsed.usage is not None and parsed.usage.total_tokens == 12
    assert parsed.usage.prompt_tokens_details.cached_tokens == 3  # type: ignore[union-attr]
    assert last["receipt"] == RECEIPT
    assert "receipt" not in r.usage_chunk(outcome(receipt=None))


def test_chat_response_merges_pieces() -> None:
    r = renderer(return_token_ids=True)
    pieces = [
        Visible("Hi ", token_ids=[1]),
        Visible("there", token_ids=[2], finish_reason="length"),
    ]
    body = r.response(pieces, outcome())
    parsed = ChatCompletion.model_validate(body)
    assert parsed.choices[0].message.content == "Hi there"
    assert parsed.choices[0].finish_reason == "length"
    assert body["choices"][0]["token_ids"] == [1, 2]
    assert body["prompt_token_ids"] == [1, 2, 3]
    assert parsed.usage is not None
    assert parsed.usage.completion_tokens_details.reasoning_tokens == 2  # type: ignore[union-attr]
    assert (
        renderer().response([], outcome(finish_reason=None))["choices"][0]["finish_reason"]
        == "stop"
    )


def test_completion_logprobs_have_running_text_offsets() -> None:
    r = renderer("completions", logprobs=1)
    entries = [
        {"token": "ab", "logprob": -0.1, "top_logprobs": [{"token": "ab", "logprob": -0.1}]},
        {"token": "c", "logprob": -0.5, "top_logprobs": []},
    ]
    body = r.response([Visible("abc", logprobs=entries)], outcome())
    parsed = Completion.model_validate(body)
    logprobs = parsed.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["ab", "c"] and logprobs.text_offset == [0, 2]
    assert logprobs.top_logprobs == [{"ab": -0.1}, {}]
    assert body["object"] == "text_completion"


def test_sse_frames_compact_json_and_plain_strings() -> None:
    assert sse({"a": [1, 2]}) == b'data: {"a":[1,2]}\n\n'
    assert sse("[DONE]") == b"data: [DONE]\n\n"
    assert json.loads(sse({"k": "v"})[6:]) == {"k": "v"}


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"return_token_ids": True},
        {"stream_options": {"include_usage": True}, "logprobs": True},
        {"return_token_ids": True, "stream_options": {"include_usage": True}, "logprobs": True},
    ],
)
def test_chunk_bytes_is_the_encoded_chunk(endpoint: str, body: dict[str, Any]) -> None:
    def renderer() -> Renderer:
        return Renderer(endpoint, response_id="chatcmpl-1", model="m é", created=7, body=body)

    fast, slow = renderer(), renderer()
    logprob = {"token": " hé", "logprob": -0.5, "top_logprobs": [{"token": " hé", "logprob": -0.5}]}
    pieces = [
        Visible(" hé", "", [5], [logprob]),
        Visible("", 'thinking "quoted"', [6, 7], []),
        Visible(" end", "", [8], [logprob]),
    ]
    for index, piece in enumerate(pieces):
        first = index == 0
        expected = sse(slow.chunk(piece, first=first, prompt_ids=(1, 2, 3)))
        assert fast.chunk_bytes(piece, first=first, prompt_ids=(1, 2, 3)) == expected
