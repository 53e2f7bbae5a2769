"""An OpenAI-compatible engine's streamed chunk, decoded straight into typed structs.

The common chunk (vLLM's: choices with a delta or text, ``token_ids``, sometimes
``prompt_token_ids`` and ``usage``) is decoded by msgspec into the structs below and turned
into engine events with attribute reads, instead of a dict per object and a ``get`` per field
(about half the CPU of reading an event). A chunk of any other shape (a field of another
type, NaN, not JSON) is left to the dict reader in ``openai_http`` (``events`` returns
``None``), which keeps its exact behaviour for odd input.
"""

from __future__ import annotations

from typing import Any

import msgspec

from fairgate.replicas.errors import ReplicaFailed
from fairgate.replicas.stream import EngineDelta, EngineEvent, EnginePrompt, EngineUsage, Part

__all__ = ["completion_logprobs_to_chat", "events"]


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None
    token_ids: list[int] | None = None
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None
    prompt_token_ids: list[int] | None = None


class _Details(msgspec.Struct):
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: _Details | None = None
    completion_tokens_details: _Details | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    prompt_token_ids: list[int] | None = None
    usage: _Usage | None = None
    error: Any = msgspec.UNSET


_decode = msgspec.json.Decoder(_Chunk).decode
_NO_USAGE = _Usage()


def events(data: bytes, endpoint: str, replica_id: str) -> list[EngineEvent] | None:
    """The events of one chunk, or ``None`` when it is not in the common shape; raises
    ``ReplicaFailed`` for an engine's error object."""
    try:
        chunk = _decode(data)
    except msgspec.DecodeError:  # ValidationError included
        return None
    choices = chunk.choices or ()
    if chunk.error is not msgspec.UNSET and not choices:
        error = chunk.error
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise ReplicaFailed(f"engine error: {message}", replica_id=replica_id)
    found: list[EngineEvent] = []
    prompt_ids = chunk.prompt_token_ids
    if prompt_ids is None and choices:
        prompt_ids = choices[0].prompt_token_ids
    if prompt_ids:
        found.append(EnginePrompt(tuple(prompt_ids)))
    if chunk.usage is not None and chunk.usage != _NO_USAGE:  # {} counts as no usage
        found.append(_usage(chunk.usage))
    chat = endpoint == "chat"
    for choice in choices:
        delta = _chat_delta(choice) if chat else _completion_delta(choice)
        if delta is not None:
            found.append(delta)
    return found


def _chat_delta(choice: _Choice) -> EngineDelta | None:
    ids = tuple(choice.token_ids) if choice.token_ids else ()
    finish = choice.finish_reason
    delta = choice.delta
    if delta is None:
        reasoning = content = ""
    else:
        reasoning = delta.reasoning or delta.reasoning_content or ""
        content = delta.content or ""
    logprobs = choice.logprobs
    entries = list((logprobs.get("content") if logprobs else None) or ())
    if reasoning and content:
        # Several tokens across the end of the reasoning (an engine under load packs them).
        return EngineDelta(content, Part.CONTENT, ids, entries, finish, reasoning=reasoning)
    if reasoning:
        return EngineDelta(reasoning, Part.REASONING, ids, entries, finish)
    if content or ids or finish:
        return EngineDelta(content, Part.CONTENT, ids, entries, finish)
    return None


def _completion_delta(choice: _Choice) -> EngineDelta | None:
    ids = tuple(choice.token_ids) if choice.token_ids else ()
    finish = choice.finish_reason
    content = choice.text or ""
    if content or ids or finish:
        logprobs = completion_logprobs_to_chat(choice.logprobs)
        return EngineDelta(content, Part.CONTENT, ids, logprobs, finish)
    return None


def _usage(usage: _Usage) -> EngineUsage:
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    return EngineUsage(
        prompt_tokens=usage.prompt_tokens or 0,
        completion_tokens=usage.completion_tokens or 0,
        cached_tokens=prompt.cached_tokens if prompt else None,
        reasoning_tokens=completion.reasoning_tokens if completion else None,
    )


def completion_logprobs_to_chat(logprobs: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The legacy completions logprobs object as a per-token list in the chat shape."""
    if not logprobs:
        return []
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    entries = []
    for index, token in enumerate(tokens):
        top = tops[index] if index < len(tops) and tops[index] else {}
        entries.append(
            {
                "token": token,
                "logprob": values[index] if index < len(values) else None,
                "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()],
            }
        )
    return entries
