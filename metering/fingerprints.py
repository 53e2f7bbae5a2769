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

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from fairgate.metering.commitment import EmbedBlocks, HiddenCommitter

Job = Callable[[], list[bytes]]
Submit = Callable[[Job], "Future[list[bytes]] | None"]
MAX_BACKLOG_BLOCKS = 256  # about 1.5 s of one core: beyond it a receipt would wait on a queue


class EmbeddingQueue:
    """The gateway's one embedding thread, with a bounded backlog.

    Under more hidden tokens than one core can embed (about 2500 a second), the queue would grow
    and receipts wait longer and longer; instead a request that finds the backlog full is
    committed under protocol 1 (no embeddings) and counted, so the gateway degrades, not stalls.
    An empty queue admits any request, however long.
    """

    def __init__(self, max_backlog: int = MAX_BACKLOG_BLOCKS) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="fairgate-embed")
        self.max_backlog = max_backlog
        self.backlog = 0
        self.refused = 0
        self._lock = threading.Lock()

    def admit(self, blocks: int) -> bool:
        with self._lock:
            if self.backlog and self.backlog + blocks > self.max_backlog:
                self.refused += 1
                return False
            self.backlog += blocks
            return True

    def done(self, blocks: int) -> None:
        with self._lock:
            self.backlog -= blocks

    def submit(self, job: Job) -> Future[list[bytes]] | None:
        if not self.admit(1):
            return None

        def run() -> list[bytes]:
            try:
                return job()
            finally:
                self.done(1)

        return self.pool.submit(run)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False)


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
            future = self._submit(self._job(block_text))
            if future is None:
                break  # the queue is full: what is left is embedded (or not) at the end
            self._early[block] = (block_text, future)
            self._next += 1

    def pending_blocks(self) -> int:
        """Blocks that :meth:`fingerprint` would still embed itself (at most)."""
        blocks = -(-self.leaves // self.block_size)
        return blocks - len(self._early)

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
