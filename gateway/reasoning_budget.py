"""A tenant's ``max_reasoning_tokens``, enforced on what the gateway meters.

The meter counts (and commits, and so bills) at most N hidden tokens. A step whose hidden
tokens go past N is cut there and ``cut`` is set; the generation then stops the upstream and
ends the answer with ``finish_reason: "length"``, the OpenAI word for a token limit. An engine
that supports a budget of its own (vLLM's ``thinking_token_budget``) is asked to end the
reasoning at N itself, and the answer then goes on; this cut is the guarantee either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fairgate.metering.commitment import HiddenCommitter
from fairgate.metering.meter import RequestMeter
from fairgate.metering.reasoning import Markers, Piece


class BudgetedMeter(RequestMeter):
    def __init__(
        self,
        budget: int,
        markers: Markers,
        committer: HiddenCommitter,
        encode: Callable[[str], list[int]],
        decode: Callable[[Sequence[int]], str],
    ) -> None:
        super().__init__(markers, committer, encode)
        self.budget = budget
        self.cut = False
        self._decode = decode

    def _count(self, piece: Piece) -> None:
        if piece.hidden_text and not piece.hidden_ids and not self._ids_seen:
            # An upstream without token ids: count now (not at close) so the cut applies.
            piece.hidden_ids = self._encode(piece.hidden_text)
        room = max(0, self.budget - self.hidden)
        if len(piece.hidden_ids) > room:
            kept = piece.hidden_ids[:room]
            piece.hidden_ids = kept
            piece.hidden_text = self._text(kept)
            # Reasoning that ended within this step has let the answer start: nothing to stop.
            self.cut = self.cut or not piece.visible_ids
        super()._count(piece)

    def _text(self, ids: list[int]) -> str:
        if not ids:
            return ""
        try:
            return self._decode(ids)
        except Exception:  # a tokenizer that cannot decode (the sim's word hashes)
            return ""


def make_meter(
    budget: int | None,
    markers: Markers,
    committer: HiddenCommitter,
    encode: Callable[[str], list[int]],
    decode: Callable[[Sequence[int]], str],
) -> RequestMeter:
    if budget is None:
        return RequestMeter(markers, committer, encode)
    return BudgetedMeter(budget, markers, committer, encode, decode)
