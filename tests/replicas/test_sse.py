"""Server-sent events into JSON payloads, as the SSE specification frames them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from fairgate.replicas.sse import sse_data, sse_payloads


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
