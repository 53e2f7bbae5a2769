"""Responses API objects and stream events, built from what the client may see of a generation.

A stream is one state machine over output items::

    response.created → response.in_progress
      ┌ response.output_item.added (reasoning, only when the policy is visible)
      │   response.content_part.added → response.reasoning_text.delta … → .done
      └ response.content_part.done → response.output_item.done
      ┌ response.output_item.added (message)
      │   response.content_part.added → response.output_text.delta … → response.output_text.done
      └ response.content_part.done → response.output_item.done
    response.completed | response.incomplete (max_output_tokens) | error → response.failed

The last event carries the usage and the ledger receipt. Hidden reasoning never reaches this
module: a ``Visible`` holds no reasoning text unless the model's policy shows it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from fairgate.gateway.errors import APIError
from fairgate.gateway.generation import RequestOutcome, Visible
from fairgate.gateway.responses_schemas import ResponsesBody
from fairgate.metering.usage import Usage

Kind = Literal["reasoning", "message"]


@dataclass(slots=True)
class Item:
    kind: Kind
    id: str
    text: str = ""
    done: bool = False

    def part(self) -> dict[str, Any]:
        if self.kind == "reasoning":
            return {"type": "reasoning_text", "text": self.text}
        return {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}

    def shape(self, status: str) -> dict[str, Any]:
        content = [self.part()] if self.text or status == "completed" else []
        if self.kind == "reasoning":
            return {
                "id": self.id,
                "type": "reasoning",
                "summary": [],
                "content": content,
                "status": status,
            }
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }


class ResponseShape:
    """The ``response`` object, as the SDKs parse it, at any point of its life."""

    def __init__(self, *, suffix: str, model: str, created: int, body: ResponsesBody) -> None:
        self.suffix = suffix
        self.id = f"resp_{suffix}"
        self.model = model
        self.created = created
        self.body = body

    def item(self, kind: Kind) -> Item:
        return Item(kind, f"{'rs' if kind == 'reasoning' else 'msg'}_{self.suffix}")

    def response(
        self,
        status: str,
        items: list[Item],
        outcome: RequestOutcome | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        item_status = {"completed": "completed", "in_progress": "in_progress"}.get(
            status, "incomplete"
        )
        body = self.body
        shaped: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": error,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "metadata": body.metadata or {},
            "model": self.model,
            "output": [i.shape("completed" if i.done else item_status) for i in items],
            "parallel_tool_calls": False,
            "previous_response_id": None,
            "reasoning": None,
            "store": False,
            "temperature": body.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": "none",
            "tools": [],
            "top_p": body.top_p,
            "truncation": "disabled",
            "usage": usage(outcome.usage) if outcome else None,
            "user": body.user,
        }
        if status in ("completed", "incomplete", "failed"):
            shaped["completed_at"] = int(time.time()) if status == "completed" else None
        if outcome is not None and outcome.receipt is not None:
            shaped["receipt"] = outcome.receipt
        return shaped

    def complete(self, pieces: list[Visible], outcome: RequestOutcome) -> dict[str, Any]:
        items = []
        reasoning = "".join(p.reasoning for p in pieces)
        if reasoning:
            items.append(self._filled("reasoning", reasoning))
        text = "".join(p.text for p in pieces)
        if text or not reasoning:
            items.append(self._filled("message", text))
        return self.response(final_status(outcome), items, outcome)

    def _filled(self, kind: Kind, text: str) -> Item:
        item = self.item(kind)
        item.text = text
        return item


def final_status(outcome: RequestOutcome) -> str:
    return "incomplete" if outcome.finish_reason == "length" else "completed"


def usage(counted: Usage) -> dict[str, Any]:
    # cache_write_tokens counts explicit cache writes (prompt_cache_options), never offered here.
    return {
        "input_tokens": counted.prompt_tokens,
        "input_tokens_details": {"cached_tokens": counted.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": counted.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": counted.reasoning_tokens},
        "total_tokens": counted.total_tokens,
    }


@dataclass(slots=True)
class EventStream:
    """The event sequence of one streamed response; each method returns the events to send."""

    shape: ResponseShape
    items: list[Item] = field(default_factory=list)
    sequence: int = 0

    def start(self) -> list[dict[str, Any]]:
        snapshot = self.shape.response("in_progress", [])
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def piece(self, visible: Visible) -> list[dict[str, Any]]:
        events = []
        parts: tuple[tuple[Kind, str], ...] = (
            ("reasoning", visible.reasoning),
            ("message", visible.text),
        )
        for kind, text in parts:
            if text:
                events += self._open(kind)
                events.append(self._delta(text))
        return events

    def finish(self, outcome: RequestOutcome) -> list[dict[str, Any]]:
        events = self._close()
        status = final_status(outcome)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        response = self.shape.response(status, self.items, outcome)
        return [*events, self._event(kind, response=response)]

    def fail(self, error: APIError, outcome: RequestOutcome | None) -> list[dict[str, Any]]:
        code = "server_error" if error.status >= 500 else "invalid_prompt"
        if error.status == 429:
            code = "rate_limit_exceeded"
        failed = {"code": code, "message": error.message}
        response = self.shape.response("failed", self.items, outcome, error=failed)
        return [
            self._event("error", code=error.code, message=error.message, param=error.param),
            self._event("response.failed", response=response),
        ]

    # helpers -------------------------------------------------------------------------
    def _open(self, kind: Kind) -> list[dict[str, Any]]:
        current = self.items[-1] if self.items else None
        if current is not None and current.kind == kind and not current.done:
            return []
        events = self._close()
        item = self.shape.item(kind)
        self.items.append(item)
        index = len(self.items) - 1
        events.append(
            self._event(
                "response.output_item.added", output_index=index, item=item.shape("in_progress")
            )
        )
        events.append(self._part_event("response.content_part.added", item))
        return events

    def _delta(self, text: str) -> dict[str, Any]:
        item = self.items[-1]
        item.text += text
        if item.kind == "reasoning":
            return self._located("response.reasoning_text.delta", item, delta=text)
        return self._located("response.output_text.delta", item, delta=text, logprobs=[])

    def _close(self) -> list[dict[str, Any]]:
        item = self.items[-1] if self.items else None
        if item is None or item.done:
            return []
        item.done = True
        if item.kind == "reasoning":
            text_done = self._located("response.reasoning_text.done", item, text=item.text)
        else:
            text_done = self._located(
                "response.output_text.done", item, text=item.text, logprobs=[]
            )
        return [
            text_done,
            self._part_event("response.content_part.done", item),
            self._event(
                "response.output_item.done",
                output_index=len(self.items) - 1,
                item=item.shape("completed"),
            ),
        ]

    def _part_event(self, kind: str, item: Item) -> dict[str, Any]:
        return self._located(kind, item, part=item.part())

    def _located(self, kind: str, item: Item, **fields: Any) -> dict[str, Any]:
        index = self.items.index(item)
        return self._event(kind, item_id=item.id, output_index=index, content_index=0, **fields)

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event


def sse_event(event: dict[str, Any]) -> bytes:
    payload = json.dumps(event, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {payload}\n\n".encode()
