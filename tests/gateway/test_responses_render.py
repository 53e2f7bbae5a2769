"""Responses API objects and stream events, validated against the official SDK's types."""

from __future__ import annotations

import json

from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from fairgate.gateway.errors import Unavailable
from fairgate.gateway.generation import RequestOutcome, Visible
from fairgate.gateway.responses_render import EventStream, ResponseShape, sse_event
from fairgate.gateway.responses_schemas import ResponsesBody
from fairgate.metering.usage import Usage

USAGE = Usage(prompt_tokens=7, cached_tokens=3, completion_tokens=5, reasoning_tokens=2)
RECEIPT = {"request_id": "req_ab", "leaves": 2}
EVENT = TypeAdapter(ResponseStreamEvent)


def outcome(finish: str | None = "stop") -> RequestOutcome:
    return RequestOutcome("ok", 200, USAGE, RECEIPT, "m-0", finish, (1, 2, 3))


def shape(**body: object) -> ResponseShape:
    parsed = ResponsesBody.model_validate({"model": "m", "input": "hi", **body})
    return ResponseShape(suffix="ab", model="m", created=1700000000, body=parsed)


def test_a_complete_response_validates_and_reports_usage() -> None:
    shaped = shape(instructions="Be brief.", temperature=0.2, metadata={"k": "v"}).complete(
        [Visible("Hel"), Visible("lo", finish_reason="stop")], outcome()
    )
    response = Response.model_validate(shaped)
    assert response.id == "resp_ab" and response.status == "completed"
    assert response.output_text == "Hello" and response.output[0].id == "msg_ab"
    assert response.instructions == "Be brief." and response.metadata == {"k": "v"}
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (7, 5, 12)
    assert usage.input_tokens_details.cached_tokens == 3
    assert usage.output_tokens_details.reasoning_tokens == 2
    assert shaped["receipt"] == RECEIPT


def test_length_is_incomplete_and_visible_reasoning_is_an_item() -> None:
    shaped = shape().complete(
        [Visible(reasoning="think"), Visible("ans", finish_reason="length")], outcome("length")
    )
    response = Response.model_validate(shaped)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert [i.type for i in response.output] == ["reasoning", "message"]
    assert shaped["output"][0]["content"] == [{"type": "reasoning_text", "text": "think"}]


def test_a_stream_is_a_valid_event_sequence() -> None:
    events = EventStream(shape())
    sent = events.start()
    sent += events.piece(Visible(reasoning="th"))
    sent += events.piece(Visible(reasoning="ink"))
    sent += events.piece(Visible("He"))
    sent += events.piece(Visible("llo", finish_reason="stop"))
    sent += events.finish(outcome())
    parsed = [EVENT.validate_python(e) for e in sent]
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    assert [e.type for e in parsed] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = [e for e in sent if e["type"] == "response.output_item.added"]
    assert [e["output_index"] for e in added] == [0, 1]
    assert sent[13]["text"] == "Hello" and sent[6]["text"] == "think"
    final = sent[-1]["response"]
    assert [i["status"] for i in final["output"]] == ["completed", "completed"]
    assert final["receipt"] == RECEIPT


def test_an_empty_answer_still_completes() -> None:
    events = EventStream(shape())
    sent = events.start() + events.piece(Visible(finish_reason="stop")) + events.finish(outcome())
    assert [e["type"] for e in sent] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert Response.model_validate(sent[-1]["response"]).output == []


def test_a_failure_ends_with_error_then_response_failed() -> None:
    events = EventStream(shape())
    sent = events.start() + events.piece(Visible("par"))
    sent += events.fail(Unavailable("no replica left"), outcome())
    parsed = [EVENT.validate_python(e) for e in sent]
    assert [e.type for e in parsed][-2:] == ["error", "response.failed"]
    error, failed = sent[-2], sent[-1]["response"]
    assert error["code"] == "no_healthy_replica" and error["message"] == "no replica left"
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"] == "par"


def test_sse_event_names_its_type() -> None:
    raw = sse_event({"type": "response.created", "sequence_number": 0}).decode()
    head, data, *_ = raw.split("\n")
    assert head == "event: response.created"
    assert json.loads(data.removeprefix("data: "))["sequence_number"] == 0
    assert raw.endswith("\n\n")
