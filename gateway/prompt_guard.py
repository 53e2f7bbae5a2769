"""The obfuscated-prompt guard: characters per token far below natural text mark encodings.

A tokenizer learned on natural text spends few tokens on it (about 4 characters per token in
English on SmolLM2's) and many on base64, hex, ciphers and leetspeak, which break its merges
(``bench/prompt_guard.py`` measures each). The guard measures windows of a prompt, so that an
encoded payload inside a long natural message still shows, and refuses the prompt when one
window falls below the tenant's ``prompt_guard.min_chars_per_token``. Windows shorter than
``MIN_WINDOW_CHARS`` are not judged: a few characters say nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fairgate.gateway.errors import InvalidRequest
from fairgate.metering.tokens import message_text

WINDOW_CHARS = 256
MIN_WINDOW_CHARS = 64


class PromptRefused(InvalidRequest):
    code = "prompt_obfuscated"
    ledger_status = "prompt_refused"  # type: ignore[assignment]  # any snake_case word


def windows(text: str) -> Iterator[str]:
    """Consecutive windows of ``WINDOW_CHARS``; a short tail joins the window before it."""
    start = 0
    while start < len(text):
        end = start + WINDOW_CHARS
        if len(text) - end < MIN_WINDOW_CHARS:
            end = len(text)
        yield text[start:end]
        start = end


def chars_per_token(text: str, encode: Callable[[str], list[int]]) -> float | None:
    """The lowest characters per token of any window, or ``None`` when no window is long
    enough to judge."""
    lowest: float | None = None
    for window in windows(text):
        stripped = window.strip()
        if len(stripped) < MIN_WINDOW_CHARS:
            continue
        ratio = len(stripped) / max(1, len(encode(stripped)))
        lowest = ratio if lowest is None else min(lowest, ratio)
    return lowest


def prompt_texts(body: dict[str, Any]) -> list[str]:
    """Every text the client wrote: each message's content, or the completion prompt."""
    if "messages" in body:
        return [message_text(m.get("content")) for m in body["messages"]]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        return [str(p) for p in prompt]
    return []  # token ids: nothing to judge


def check(
    min_chars_per_token: float, body: dict[str, Any], encode: Callable[[str], list[int]]
) -> None:
    for text in prompt_texts(body):
        ratio = chars_per_token(text, encode)
        if ratio is not None and ratio < min_chars_per_token:
            raise PromptRefused(
                f"The prompt looks encoded or obfuscated: {ratio:.2f} characters per token "
                f"where this tenant requires at least {min_chars_per_token:g}. Send it as "
                "plain text.",
                param="messages" if "messages" in body else "prompt",
            )
