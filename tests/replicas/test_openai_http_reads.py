"""A provider's events one upstream read at a time: grouped by ``more`` for providers that
do not batch, the inner stream closed at once when the reader stops, and every payload
json would take still taken."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from fairgate.replicas.openai_http import OpenAIReplica
from fairgate.replicas.stream import EngineDelta, EngineEvent, EnginePrompt, EngineUsage, in_reads


async def test_in_reads_groups_by_more_and_closes_the_stream_it_reads() -> None:
    closed: list[bool] = []

    async def events() -> AsyncGenerator[EngineEvent, None]:
        try:
            yield EnginePrompt((1, 2))
            yield EngineDelta("a", more=True)
            yield EngineDelta("b")
            yield EngineDelta("c")
            yield EngineDelta("d", more=True)
            yield EngineDelta("e")
            yield EngineUsage(2, 5)
        finally:
            closed.append(True)

    texts = [
        [e.text if isinstance(e, EngineDelta) else type(e).__name__ for e in read]
        async for read in in_reads(events())
    ]
    assert texts == [["EnginePrompt", "a", "b"], ["c"], ["d", "e"], ["EngineUsage"]]
    reads = in_reads(events())
    assert len(await anext(reads)) == 3
    await reads.aclose()
    assert closed == [True, True]  # the second closed with its reader, not by the collector


def test_a_payload_json_takes_and_msgspec_refuses_still_counts() -> None:
    replica = OpenAIReplica("r", "m", "http://127.0.0.1:1")
    nan = b'{"choices":[{"index":0,"delta":{"content":"a"},"token_ids":[1],"x":NaN}]}'
    tail = b'{"choices":[{"index":0,"delta":{"content":"b"},"token_ids":[2]}]}'
    events, broken = replica._read([nan, tail], "chat")
    assert broken is None
    assert [e.text for e in events if isinstance(e, EngineDelta)] == ["a", "b"]


def test_text_outside_ascii_and_escapes_arrive_as_sent() -> None:
    replica = OpenAIReplica("r", "m", "http://127.0.0.1:1")
    payload = '{"choices":[{"index":0,"delta":{"content":"é\\u00e9\\n😀"},"token_ids":[7]}]}'
    events, broken = replica._read([payload.encode()], "chat")
    assert broken is None and isinstance(events[0], EngineDelta)
    assert events[0].text == "éé\n😀"
