"""OpenAI response objects and stream chunks, built from what the client may see."""

from __future__ import annotations

from typing import Any

import msgspec

from fairgate.gateway.generation import RequestOutcome, Visible
from fairgate.replicas.stream import Endpoint


class Renderer:
    """Shapes one response as OpenAI does, for chat or legacy completions."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        response_id: str,
        model: str,
        created: int,
        body: dict[str, Any],
    ) -> None:
        self.endpoint = endpoint
        self.response_id = response_id
        self.model = model
        self.created = created
        self.want_ids = bool(body.get("return_token_ids"))
        self.want_logprobs = body.get("logprobs") not in (None, False)
        self.want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._offset = 0
        self._prefix: bytes | None = None
        self._suffix = b""

    # streaming -----------------------------------------------------------------------
    def chunk(
        self, visible: Visible, *, first: bool, prompt_ids: tuple[int, ...] = ()
    ) -> dict[str, Any]:
        chunk = self._envelope(self._object(stream=True), [self._stream_choice(visible, first)])
        if first and self.want_ids:
            chunk["prompt_token_ids"] = list(prompt_ids)
        if self.want_usage:
            chunk["usage"] = None
        return chunk

    def chunk_bytes(
        self, visible: Visible, *, first: bool, prompt_ids: tuple[int, ...] = ()
    ) -> bytes:
        """``sse(self.chunk(...))`` with the envelope encoded once per response: only the
        choice is encoded per chunk."""
        if self._prefix is None:
            envelope = _encode(self._envelope(self._object(stream=True), []))
            self._prefix = b"data: " + envelope.removesuffix(b"[]}") + b"["
            self._suffix = (b',"usage":null' if self.want_usage else b"") + b"}\n\n"
        choice = _encode(self._stream_choice(visible, first))
        if first and self.want_ids:
            ids = b'],"prompt_token_ids":' + _encode(prompt_ids)
            return b"".join((self._prefix, choice, ids, self._suffix))
        return b"".join((self._prefix, choice, b"]", self._suffix))

    def _stream_choice(self, visible: Visible, first: bool) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0}
        if self.endpoint == "chat":
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if visible.reasoning:
                delta["reasoning"] = visible.reasoning
            if visible.text or first:
                delta["content"] = visible.text
            choice["delta"] = delta
        else:
            choice["text"] = visible.text
        choice["logprobs"] = self._logprobs(visible) if self.want_logprobs else None
        choice["finish_reason"] = visible.finish_reason
        if self.want_ids:
            choice["token_ids"] = visible.token_ids
        return choice

    def usage_chunk(self, outcome: RequestOutcome) -> dict[str, Any]:
        chunk = self._envelope(self._object(stream=True), [])
        chunk["usage"] = outcome.usage.to_openai()
        if outcome.receipt is not None:
            chunk["receipt"] = outcome.receipt
        return chunk

    # non-streaming -------------------------------------------------------------------
    def response(self, pieces: list[Visible], outcome: RequestOutcome) -> dict[str, Any]:
        text = "".join(p.text for p in pieces)
        choice: dict[str, Any] = {"index": 0}
        if self.endpoint == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            reasoning = "".join(p.reasoning for p in pieces)
            if reasoning:
                message["reasoning"] = reasoning
            choice["message"] = message
        else:
            choice["text"] = text
        merged = Visible(
            text,
            "",
            [i for p in pieces for i in p.token_ids],
            [e for p in pieces for e in p.logprobs],
        )
        self._offset = 0
        choice["logprobs"] = self._logprobs(merged) if self.want_logprobs else None
        choice["finish_reason"] = outcome.finish_reason or "stop"
        if self.want_ids:
            choice["token_ids"] = merged.token_ids
        response = self._envelope(self._object(stream=False), [choice])
        response["usage"] = outcome.usage.to_openai()
        if self.want_ids:
            response["prompt_token_ids"] = list(outcome.prompt_token_ids)
        if outcome.receipt is not None:
            response["receipt"] = outcome.receipt
        return response

    # helpers -------------------------------------------------------------------------
    def _object(self, *, stream: bool) -> str:
        if self.endpoint == "chat":
            return "chat.completion.chunk" if stream else "chat.completion"
        return "text_completion"

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }

    def _logprobs(self, visible: Visible) -> dict[str, Any] | None:
        if self.endpoint == "chat":
            return {"content": visible.logprobs, "refusal": None}
        tokens = [str(e.get("token", "")) for e in visible.logprobs]
        offsets = []
        for token in tokens:
            offsets.append(self._offset)
            self._offset += len(token)
        return {
            "tokens": tokens,
            "token_logprobs": [e.get("logprob") for e in visible.logprobs],
            "top_logprobs": [
                {t["token"]: t["logprob"] for t in e.get("top_logprobs") or []}
                for e in visible.logprobs
            ],
            "text_offset": offsets,
        }


_encode = msgspec.json.Encoder().encode  # compact, UTF-8; about 10x json.dumps on a chunk


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data.encode() if isinstance(data, str) else _encode(data)
    return b"data: " + payload + b"\n\n"
