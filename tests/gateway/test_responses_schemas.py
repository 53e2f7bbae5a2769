"""Responses request bodies: what is accepted, what is refused, and the chat they become."""

from __future__ import annotations

import pytest

from fairgate.gateway.errors import InvalidRequest
from fairgate.gateway.responses_schemas import parse


def test_a_string_input_is_one_user_message() -> None:
    body = parse({"model": "m", "input": "hi", "max_output_tokens": 9, "top_p": 0.5})
    assert body.chat_body() == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "max_completion_tokens": 9,
        "top_p": 0.5,
    }


def test_messages_instructions_and_developer_role() -> None:
    body = parse(
        {
            "model": "m",
            "instructions": "Be brief.",
            "stream": True,
            "input": [
                {"role": "developer", "content": "Use English."},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "Hello, "},
                    {"type": "input_text", "text": "there."},
                ]},
                {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": "Hi.", "annotations": []}]},
            ],
        }
    )  # fmt: skip
    chat = body.chat_body()
    assert chat["stream"] is True
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use English."},
        {"role": "user", "content": "Hello, there."},
        {"role": "assistant", "content": "Hi."},
    ]


@pytest.mark.parametrize(
    ("data", "param", "words"),
    [
        ({"tools": [], "text": {}}, "tools", ["'tools'", "'text'"]),
        ({"previous_response_id": "resp_1"}, "previous_response_id", ["does not store"]),
        ({"store": True}, "store", ["does not store"]),
        ({"input": 5}, "input", ["string or a non-empty list"]),
        ({"input": ["hi"]}, "input[0]", ["message object"]),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", ["expected one of"]),
        ({"input": [{"role": "user", "content": 3}]}, "input[0].content", ["text parts"]),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type", ["'reasoning'"]),
        ({"top_p": 2}, "top_p", ["top_p"]),
        ({"stream": "yes"}, "stream", ["stream"]),
        ({"metadata": {"k": 1}}, "metadata.k", ["metadata.k"]),
    ],
)
def test_refusals_name_the_parameter(data: dict, param: str, words: list[str]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse({"model": "m", "input": "hi", **data}).chat_body()
    assert caught.value.param == param
    for word in words:
        assert word in caught.value.message


def test_missing_input_and_store_false() -> None:
    with pytest.raises(InvalidRequest, match="Missing required parameter: 'input'"):
        parse({"model": "m"})
    assert parse({"model": "m", "input": "x", "store": False}).store is False
