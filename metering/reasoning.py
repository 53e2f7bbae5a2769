"""Telling reasoning (hidden) tokens from content (visible) tokens in an engine's stream.

Two sources of truth are combined, and what either calls reasoning is hidden:

* the engine's own attribution (vLLM's reasoning parser fills ``delta.reasoning``), and
* the model's reasoning markers (``<think>`` … ``</think>``), recognised by the gateway
  itself, so a raw ``/v1/completions`` prompt that makes the model think is caught too.

With the markers' token ids known, attribution is exact per token: it follows the ids, so it
holds when an engine packs several tokens, across a boundary, into one chunk. A prompt that
ends inside an open marker (as DeepSeek-R1 and Qwen3 templates do) starts the answer in
reasoning. Without marker ids, the text is split on the marker strings (holding back a
possible partial marker at a chunk's end) and the ids and logprobs of a chunk that straddles
a boundary are withheld, because they cannot be split safely.

Counting follows vLLM: the markers themselves are withheld from the client but are not
reasoning tokens; reasoning tokens are the ones strictly between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Piece:
    """The visible and hidden parts of one engine step."""

    visible_text: str = ""
    hidden_text: str = ""
    visible_ids: list[int] = field(default_factory=list)
    hidden_ids: list[int] = field(default_factory=list)
    marker_ids: list[int] = field(default_factory=list)
    visible_logprobs: list[dict[str, Any]] = field(default_factory=list)
    ids_exact: bool = True


@dataclass(slots=True, frozen=True)
class Markers:
    start_text: str = "<think>"
    end_text: str = "</think>"
    start_id: int | None = None
    end_id: int | None = None

    @property
    def by_id(self) -> bool:
        return self.start_id is not None and self.end_id is not None

    def prompt_opens_reasoning(self, prompt_ids: Sequence[int]) -> bool:
        """True when the prompt's last marker is an opening one."""
        for token in reversed(prompt_ids):
            if token == self.start_id:
                return True
            if token == self.end_id:
                return False
        return False


@dataclass(slots=True)
class _TextSplit:
    visible: str = ""
    hidden: str = ""
    markers: int = 0
    mixed: bool = False


class ReasoningSplitter:
    """Feed it each engine step in order; it returns that step's visible and hidden parts."""

    def __init__(self, markers: Markers, *, start_in_reasoning: bool = False) -> None:
        self.markers = markers
        self._text_hidden = start_in_reasoning
        self._ids_hidden = start_in_reasoning
        self._held = ""
        self._started = False

    def open_from_prompt(self, prompt_ids: Sequence[int]) -> None:
        """Set the starting state from the prompt, before the first step."""
        if not self._started:
            opened = self.markers.prompt_opens_reasoning(prompt_ids)
            self._text_hidden = self._ids_hidden = opened

    def step(
        self,
        text: str,
        ids: Sequence[int],
        logprobs: Sequence[dict[str, Any]],
        *,
        engine_reasoning: bool = False,
        reasoning_text: str = "",
    ) -> Piece:
        """One engine step. ``engine_reasoning``: the engine attributed the whole step to
        reasoning. ``reasoning_text``: reasoning the engine parsed out of a content step that
        packs several tokens across the end of the reasoning (its ids come with ``ids``)."""
        self._started = True
        if self.markers.by_id and ids:
            piece = self._by_ids(text, list(ids), list(logprobs), engine_reasoning)
        elif engine_reasoning:
            piece = Piece(hidden_text=_strip(text, self.markers), hidden_ids=list(ids))
        else:
            piece = self._by_text(text, list(ids), list(logprobs))
            if reasoning_text and piece.visible_ids:
                piece.hidden_ids, piece.visible_ids = piece.visible_ids, []
                piece.visible_logprobs, piece.ids_exact = [], False
        if reasoning_text:
            piece.hidden_text = _strip(reasoning_text, self.markers) + piece.hidden_text
        return piece

    def flush(self) -> Piece:
        """End of stream: release text held back as a possible partial marker."""
        held, self._held = self._held, ""
        return Piece(hidden_text=held) if self._text_hidden else Piece(visible_text=held)

    def _by_ids(
        self, text: str, ids: list[int], logprobs: list[dict[str, Any]], engine_reasoning: bool
    ) -> Piece:
        piece = Piece()
        if engine_reasoning:  # the engine says this step is reasoning, up to any end marker
            self._ids_hidden = True
        start_hidden = self._ids_hidden
        aligned = len(logprobs) == len(ids)
        for index, token in enumerate(ids):
            if token in (self.markers.start_id, self.markers.end_id):
                self._ids_hidden = token == self.markers.start_id
                piece.marker_ids.append(token)
            elif self._ids_hidden:
                piece.hidden_ids.append(token)
            else:
                piece.visible_ids.append(token)
                if aligned:
                    piece.visible_logprobs.append(self._scrub(logprobs[index]))
        if engine_reasoning:
            piece.hidden_text = _strip(text, self.markers)
        elif self._held or self.markers.start_text in text or self.markers.end_text in text:
            # In-band markers (no reasoning parser upstream): split the text on them, starting
            # from where the ids stood when this step began.
            self._text_hidden = start_hidden
            split = self._split_text(text)
            if piece.visible_ids:
                piece.visible_text, piece.hidden_text = split.visible, split.hidden
            else:
                piece.hidden_text = split.hidden + split.visible
        elif piece.visible_ids:
            # The engine already parsed any reasoning out of this content text.
            piece.visible_text = text
        else:
            piece.hidden_text = text
        self._text_hidden = self._ids_hidden
        return piece

    def _by_text(self, text: str, ids: list[int], logprobs: list[dict[str, Any]]) -> Piece:
        was_hidden = self._text_hidden
        split = self._split_text(text)
        piece = Piece(visible_text=split.visible, hidden_text=split.hidden)
        if split.mixed:
            piece.hidden_ids, piece.ids_exact = ids, False
        elif split.markers and not split.visible and not split.hidden:
            piece.marker_ids = ids
        elif split.hidden or (was_hidden and not split.visible and not split.markers):
            piece.hidden_ids = ids
        else:
            piece.visible_ids = ids
            piece.visible_logprobs = [self._scrub(entry) for entry in logprobs]
        return piece

    def _scrub(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Drop reasoning markers offered as alternatives at a visible position."""
        top = entry.get("top_logprobs")
        if not top:
            return entry
        marks = (self.markers.start_text, self.markers.end_text)
        kept = [alt for alt in top if alt.get("token") not in marks]
        return entry if len(kept) == len(top) else {**entry, "top_logprobs": kept}

    def _split_text(self, text: str) -> _TextSplit:
        marker = self.markers.end_text if self._text_hidden else self.markers.start_text
        if not self._held and marker[0] not in text:  # most tokens: no marker, none begun
            return _TextSplit(hidden=text) if self._text_hidden else _TextSplit(visible=text)
        split = _TextSplit()
        buffer = self._held + text
        self._held = ""
        while buffer:
            marker = self.markers.end_text if self._text_hidden else self.markers.start_text
            at = buffer.find(marker)
            if at < 0:
                keep = _partial_suffix(buffer, marker)
                emit, self._held = buffer[: len(buffer) - keep], buffer[len(buffer) - keep :]
                buffer = ""
            else:
                emit, buffer = buffer[:at], buffer[at + len(marker) :]
            if self._text_hidden:
                split.hidden += emit
            else:
                split.visible += emit
            if at >= 0:
                split.markers += 1
                self._text_hidden = not self._text_hidden
        # A chunk with text on both sides of a marker, or with text held back as a possible
        # marker, cannot have its ids and logprobs split without token boundaries.
        both = bool(split.visible) and (bool(split.hidden) or split.markers > 0)
        split.mixed = both or bool(self._held)
        return split


def _strip(text: str, markers: Markers) -> str:
    return text.replace(markers.start_text, "").replace(markers.end_text, "")


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    # Such a suffix starts with the marker's first character, so only those are tried (most
    # chunks have none near their end: this runs for every content token of a model whose
    # marker ids are unknown).
    first, end = marker[0], len(text)
    at = text.find(first, max(0, end - len(marker) + 1))
    while at >= 0:
        if marker.startswith(text[at:]):
            return end - at
        at = text.find(first, at + 1)
    return 0
