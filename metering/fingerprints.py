"""Embedding fingerprints while the reasoning streams, so the receipt does not wait for them.

Embedding costs about 6 ms of CPU per 16-token block (``bench/audit/cost.py``); done at the end
it would delay a 2048-token request's receipt by most of a second. :class:`StreamingCommitter`
hands each block to ``submit`` (the gateway's one embedding thread) as soon as the block is
full, and :meth:`StreamingCommitter.fingerprint` then embeds only what is left: the last block,
and any block whose text changed after it was handed over (text that arrives without tokens
belongs with the token before it). The committed embeddings are exactly those of
:meth:`HiddenCommitter.fingerprint`: each is of the block's final text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future

from fairgate.metering.commitment import EmbedBlocks, HiddenCommitter

Submit = Callable[[Callable[[], list[bytes]]], "Future[list[bytes]]"]


class StreamingCommitter(HiddenCommitter):
    __slots__ = ("_early", "_embed", "_model", "_next", "_submit")

    def __init__(self, block_size: int, model: str, embed: EmbedBlocks, submit: Submit) -> None:
        super().__init__(block_size)
        self._model = model
        self._embed = embed
        self._submit = submit
        self._next = 0  # the first block not yet handed over
        self._early: dict[int, tuple[str, Future[list[bytes]]]] = {}

    def add(self, token_ids: Sequence[int], text: str) -> None:
        super().add(token_ids, text)
        full = self.leaves // self.block_size
        while self._next < full - 1:  # the newest full block may still get token-less text
            block = self._next
            block_text = "".join(self._texts[block]) if block < len(self._texts) else ""
            self._early[block] = (block_text, self._submit(self._job(block_text)))
            self._next += 1

    def _job(self, text: str) -> Callable[[], list[bytes]]:
        def run() -> list[bytes]:
            return list(self._embed([text]))

        return run

    def fingerprint(self, model: str | None = None, embed: EmbedBlocks | None = None) -> None:
        """Commit version 2: reuse the embeddings computed while streaming where still valid."""
        opening = self._build_opening()
        ready: dict[int, bytes] = {}
        for block, (text, future) in self._early.items():
            if block < len(opening.block_texts) and opening.block_texts[block] == text:
                ready[block] = future.result()[0]
        missing = [i for i in range(len(opening.block_texts)) if i not in ready]
        fresh = (embed or self._embed)([opening.block_texts[i] for i in missing]) if missing else []
        ready.update(zip(missing, fresh, strict=True))
        embeddings = [ready[i] for i in range(len(opening.block_texts))]
        super().fingerprint(model or self._model, lambda texts: embeddings)
