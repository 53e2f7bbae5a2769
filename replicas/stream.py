"""What one replica's stream looks like to the gateway.

Every provider (``openai``, ``vllm``, ``sim``) turns its engine's output into the same
sequence of events::

    EnginePrompt            once, first, when the engine reports the prompt's token ids
    EngineDelta ...         one per engine step: text, token ids, attribution, logprobs
    EngineUsage             once, last, the engine's own usage counts (when it reports them)

The gateway never sees provider-specific chunk shapes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

Endpoint = Literal["chat", "completions"]


class Part(Enum):
    """Which part of the answer a delta belongs to, as the engine attributed it."""

    CONTENT = "content"
    REASONING = "reasoning"


@dataclass(slots=True)
class EngineRequest:
    """One generation request, already validated at the HTTP edge.

    ``body`` is the OpenAI request body to send upstream (``model`` already rewritten to the
    engine's model name, ``stream`` forced on). ``prompt_token_ids`` is the gateway's own
    tokenization, used by providers that have no tokenizer of their own (``sim``).
    """

    request_id: str
    endpoint: Endpoint
    body: dict[str, Any]
    prompt_token_ids: tuple[int, ...] = ()


@dataclass(slots=True)
class EnginePrompt:
    token_ids: tuple[int, ...]


@dataclass(slots=True)
class EngineDelta:
    """One engine step. ``reasoning`` is set on a content step that packs several tokens
    across the end of the reasoning: the engine's parsed reasoning text for some of its ids.
    ``more``: another delta that arrived with this one follows at once (the relay may hold
    this one's bytes for one write with the rest)."""

    text: str
    part: Part = Part.CONTENT
    token_ids: tuple[int, ...] = ()
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    reasoning: str = ""
    more: bool = False


@dataclass(slots=True)
class EngineUsage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


EngineEvent = EnginePrompt | EngineDelta | EngineUsage


async def in_reads(
    events: AsyncGenerator[EngineEvent, None],
) -> AsyncGenerator[list[EngineEvent], None]:
    """A provider's events grouped as they arrived: each list ends with a delta not marked
    ``more`` (or with the stream). For providers that do not read in batches themselves."""
    async with aclosing(events):
        batch: list[EngineEvent] = []
        async for event in events:
            batch.append(event)
            if type(event) is EngineDelta and not event.more:
                yield batch
                batch = []
        if batch:
            yield batch
