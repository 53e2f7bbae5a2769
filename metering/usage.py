"""Token usage of one request, in OpenAI's shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class Usage:
    """``completion_tokens`` counts visible and hidden (reasoning) tokens, as OpenAI does."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def visible_tokens(self) -> int:
        return self.completion_tokens - self.reasoning_tokens

    def to_openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    @classmethod
    def from_openai(cls, data: dict[str, Any]) -> Usage:
        prompt_details = data.get("prompt_tokens_details") or {}
        completion_details = data.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            cached_tokens=int(prompt_details.get("cached_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens", 0)),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        )
