"""The audit's inputs from files: the receipt, the prompt, the answer and a tokenizer.

Each loader raises :class:`AuditClientError` (the CLI's exit 2) on input it cannot use.
"""

from __future__ import annotations

import json
from pathlib import Path

from fairgate.metering.audit import parse_receipt
from fairgate.metering.audit_check import Retokenize
from fairgate.metering.record import Receipt


class AuditClientError(Exception):
    """The audit could not run: bad input, an unreachable gateway, a refused key (exit 2)."""


def load_receipt(source: str) -> Receipt:
    """A receipt from a file path or inline JSON (a receipt, or a response holding one)."""
    text = source
    if not source.lstrip().startswith("{"):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise AuditClientError(f"cannot read receipt {source}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuditClientError(f"receipt is not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("receipt"), dict):
        data = data["receipt"]
    try:
        return parse_receipt(data)
    except ValueError as exc:
        raise AuditClientError(f"not a receipt: {exc}") from None


def load_retokenizer(path: str) -> Retokenize:
    """``text -> token ids`` (no special tokens) from a ``tokenizer.json`` or a model folder."""
    try:
        if Path(path).is_file():
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(path)
            return lambda text: tokenizer.encode(text, add_special_tokens=False).ids
        from fairgate.metering.tokens import HFTokenizer

        return HFTokenizer(path).encode
    except Exception as exc:  # tokenizers and transformers raise many kinds
        raise AuditClientError(f"cannot load tokenizer {path}: {exc}") from None


def load_prompt(source: str) -> str:
    """The prompt's text from a file: plain text, or a JSON messages array (contents joined)."""
    text = read_text(source, "prompt")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(data, list):
        parts = []
        for message in data:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):  # content parts: keep the text ones
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            if not isinstance(content, str):
                raise AuditClientError("prompt: a messages array needs a 'content' per message")
            parts.append(content)
        return "\n\n".join(parts)
    return text


def read_text(source: str, what: str) -> str:
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditClientError(f"cannot read {what} {source}: {exc.strerror}") from None
