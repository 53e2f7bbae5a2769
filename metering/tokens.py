"""The gateway's own tokenizer: prompt token ids for prefix matching, counting and markers.

``HFTokenizer`` uses the model's real tokenizer (and chat template) when one is configured.
``WordTokenizer`` is the fallback when none is: deterministic ids for words and punctuation,
good enough for prefix matching and for the ``sim`` provider, never for billing a real engine
(real engines report their own counts).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any, Protocol

_WORDS = re.compile(r"\s*\S+|\s+")


class Tokenizer(Protocol):
    name: str

    def encode(self, text: str) -> list[int]: ...

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def token_id(self, text: str) -> int | None: ...


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the text parts of a list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
    return "".join(parts)


def _plain_chat(messages: Sequence[dict[str, Any]]) -> str:
    lines = [f"<|{m.get('role', 'user')}|>\n{message_text(m.get('content'))}\n" for m in messages]
    return "".join(lines) + "<|assistant|>\n"


class WordTokenizer:
    """Whitespace-led words hashed to 31-bit ids; decode is not supported."""

    name = "words"
    _vocab_bits = 0x7FFFFFFF

    def encode(self, text: str) -> list[int]:
        return [zlib.crc32(w.encode("utf-8")) & self._vocab_bits for w in _WORDS.findall(text)]

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        return self.encode(_plain_chat(messages))

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError("the word tokenizer cannot decode")

    def token_id(self, text: str) -> int | None:
        return None


class HFTokenizer:
    """A Hugging Face tokenizer from a local folder or a cached hub id."""

    def __init__(self, source: str) -> None:
        from transformers import AutoTokenizer

        self.name = source
        self._tok = AutoTokenizer.from_pretrained(source)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        flat = [
            {"role": m.get("role", "user"), "content": message_text(m.get("content"))}
            for m in messages
        ]
        if getattr(self._tok, "chat_template", None):
            try:
                rendered = self._tok.apply_chat_template(
                    flat, add_generation_prompt=True, tokenize=False
                )
                return list(self._tok.encode(rendered, add_special_tokens=False))
            except Exception:
                pass
        return self.encode(_plain_chat(flat))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids)))

    def token_id(self, text: str) -> int | None:
        ids = self._tok.encode(text, add_special_tokens=False)
        return int(ids[0]) if len(ids) == 1 else None


def load_tokenizer(source: str | None) -> Tokenizer:
    if not source:
        return WordTokenizer()
    return HFTokenizer(source)
