"""Server-sent events into JSON payloads, as the SSE specification frames them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from fairgate.replicas.sse import sse_batches, sse_data, sse_payloads


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _collect(*lines: str) -> list[dict[str, Any]]:
    return [payload async for payload in sse_payloads(_lines(*lines))]


async def test_one_payload_per_event_and_stop_at_done() -> None:
    got = await _collect(
        'data: {"a": 1}', "", 'data: {"a": 2}', "", "data: [DONE]", "", 'data: {"late": 1}', ""
    )
    assert got == [{"a": 1}, {"a": 2}]


async def test_multiline_data_is_joined_and_comments_and_fields_ignored() -> None:
    got = await _collect(": keep-alive", "event: chunk", "id: 7", 'data: {"a":', "data: 1}", "")
    assert got == [{"a": 1}]


async def test_crlf_and_no_space_after_colon() -> None:
    assert await _collect('data:{"a": 1}\r', "\r") == [{"a": 1}]


async def test_a_last_event_without_blank_line_is_not_lost() -> None:
    assert await _collect('data: {"tail": true}') == [{"tail": True}]
    assert await _collect("data: [DONE]") == []


async def test_blank_lines_alone_yield_nothing() -> None:
    assert await _collect("", "", "") == []


async def test_malformed_json_raises() -> None:
    with pytest.raises(ValueError):
        await _collect("data: {not json", "")


async def _chunks(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _data(*chunks: bytes) -> list[bytes]:
    return [data async for data in sse_data(_chunks(*chunks))]


async def test_bytes_events_split_across_reads_and_stop_at_done() -> None:
    got = await _data(
        b'data: {"a":1}\n\ndata: {"b"', b":2}\n\n: keep-alive\n\n", b"data: [DONE]\n\n"
    )
    assert got == [b'{"a":1}', b'{"b":2}']
    assert await _data(b"data: [DONE]\n\n", b"data: late\n\n") == []


async def test_bytes_crlf_multiline_fields_and_unterminated_tail() -> None:
    got = await _data(b"data: 1\r", b"\n\r\nevent: x\r\ndata:2\r\ndata: 3\r\n\r\n", b"data: 4")
    assert got == [b"1", b"2\n3", b"4"]


async def test_batches_are_the_events_of_one_read() -> None:
    reads = (
        b"data: 1\n\ndata: 2\n\ndata: 3",
        b"\n\n",
        b": ping\n\n",
        b"data: 4\n\ndata: [DONE]\n\n",
    )
    got = [batch async for batch in sse_batches(_chunks(*reads))]
    assert got == [[b"1", b"2"], [b"3"], [b"4"]]


def test_one_read_marks_every_delta_but_its_last() -> None:
    from fairgate.replicas.openai_http import OpenAIReplica
    from fairgate.replicas.stream import EngineDelta, EngineUsage

    replica = OpenAIReplica("r", "m", "http://127.0.0.1:1")
    chunk = b'{"choices":[{"index":0,"delta":{"content":"%s"},"token_ids":[%d]}]}'
    usage = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}'
    events, broken = replica._read([chunk % (b"a", 1), chunk % (b"b", 2), usage], "chat")
    assert broken is None
    deltas = [event for event in events if isinstance(event, EngineDelta)]
    assert [(d.text, d.more) for d in deltas] == [("a", True), ("b", False)]
    assert isinstance(events[-1], EngineUsage)


def test_a_broken_event_keeps_the_events_before_it() -> None:
    from fairgate.replicas.openai_http import OpenAIReplica
    from fairgate.replicas.stream import EngineDelta

    replica = OpenAIReplica("r", "m", "http://127.0.0.1:1")
    good = b'{"choices":[{"index":0,"delta":{"content":"a"},"token_ids":[1]}]}'
    events, broken = replica._read([good, b'{"choices": [', good], "chat")
    assert isinstance(broken, ValueError)
    assert [(e.text, e.more) for e in events if isinstance(e, EngineDelta)] == [("a", False)]
