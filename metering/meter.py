"""The meter of one request: what the gateway itself counted of an engine's stream.

It splits each step into visible and hidden parts, commits the hidden tokens, and at the end
reconciles its own counts with the engine's usage. Disagreements are returned, never
dropped: the caller turns them into a metric and a log line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fairgate.metering.commitment import HiddenCommitter
from fairgate.metering.reasoning import Markers, Piece, ReasoningSplitter
from fairgate.metering.usage import Usage


class EngineCounts(Protocol):
    """What metering reads of the engine's own usage report (the replicas' ``EngineUsage``
    has this shape; metering declares it rather than importing it)."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int | None: ...
    @property
    def reasoning_tokens(self) -> int | None: ...


@dataclass(slots=True, frozen=True)
class Disagreement:
    field: str
    ours: int
    engine: int


class RequestMeter:
    def __init__(
        self, markers: Markers, committer: HiddenCommitter, encode: Callable[[str], list[int]]
    ) -> None:
        self.splitter = ReasoningSplitter(markers)
        self.committer = committer
        self._encode = encode
        self.prompt_ids: tuple[int, ...] = ()
        self.visible = 0
        self.hidden = 0
        self.markers = 0
        self.steps = 0
        self.exact = True
        self._ids_seen = False
        self._idless_hidden: list[str] = []

    def prompt(self, token_ids: Sequence[int]) -> None:
        self.prompt_ids = tuple(token_ids)
        self.splitter.open_from_prompt(token_ids)

    def step(
        self,
        text: str,
        ids: Sequence[int],
        logprobs: Sequence[dict[str, Any]],
        *,
        engine_reasoning: bool,
        reasoning_text: str = "",
    ) -> Piece:
        self.steps += 1
        self._ids_seen = self._ids_seen or bool(ids)
        piece = self.splitter.step(
            text, ids, logprobs, engine_reasoning=engine_reasoning, reasoning_text=reasoning_text
        )
        self._count(piece)
        return piece

    def flush(self) -> Piece:
        piece = self.splitter.flush()
        self._count(piece)
        return piece

    def _count(self, piece: Piece) -> None:
        self.visible += len(piece.visible_ids)
        self.markers += len(piece.marker_ids)
        self.exact = self.exact and piece.ids_exact
        if piece.hidden_ids:
            self.hidden += len(piece.hidden_ids)
            self.committer.add(piece.hidden_ids, piece.hidden_text)
        elif piece.hidden_text:
            self._idless_hidden.append(piece.hidden_text)

    def close(self) -> None:
        """An upstream that never sent token ids: count hidden text with our tokenizer."""
        if not self._ids_seen and self._idless_hidden:
            text = "".join(self._idless_hidden)
            ids = self._encode(text)
            self.hidden += len(ids)
            self.committer.add(ids, text)
        self._idless_hidden = []

    @property
    def completion(self) -> int:
        counted = self.visible + self.hidden + self.markers
        return counted if self._ids_seen else max(counted, self.steps)

    def usage(
        self, engine: EngineCounts | None, fallback_prompt: int
    ) -> tuple[Usage, list[Disagreement]]:
        """Billable usage: our reasoning count (bound to the commitment), the engine's totals."""
        self.close()
        reasoning = self.hidden
        if engine is None:
            prompt = len(self.prompt_ids) or fallback_prompt
            return Usage(prompt, 0, max(self.completion, reasoning), reasoning), []
        disagreements = []
        if self.exact and self._ids_seen and engine.completion_tokens != self.completion:
            disagreements.append(
                Disagreement("completion_tokens", self.completion, engine.completion_tokens)
            )
        if engine.reasoning_tokens is not None and engine.reasoning_tokens != reasoning:
            disagreements.append(
                Disagreement("reasoning_tokens", reasoning, engine.reasoning_tokens)
            )
        completion = max(engine.completion_tokens, reasoning)
        usage = Usage(engine.prompt_tokens, engine.cached_tokens or 0, completion, reasoning)
        return usage, disagreements
