"""A simulated serving engine with batch slots, a FIFO queue and a prefix cache.

It stands in for one vLLM-like replica behind every gateway under test, so that all of them
face the same engine. The model is a step loop, as continuous-batching engines run:

    waiting (FIFO) ──free slot──▶ running ──prefill done──▶ one token per step ──▶ finished

- At most ``slots`` sequences run; the rest wait in arrival order (the engine never reorders:
  whatever order a gateway sends is the order work is done).
- Each step takes ``step_s`` plus ``prefill_s_per_token`` for every uncached prompt token
  prefilled in it (at most ``prefill_chunk`` per step, like chunked prefill), so one uncached
  long prompt slows down every running sequence, as it does on a real engine.
- Admission looks the prompt up in a block-hashed LRU prefix cache (``replicas.sim``'s, the
  one fairgate's ``sim`` provider uses) and only the uncached part is prefilled.
- A sequence's first token comes out of the step that finishes its prefill.

Time comes from the event loop; the decisions (admission order, cache hits, token counts) are
deterministic for a given arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fairgate.metering.tokens import WordTokenizer
from fairgate.replicas.sim import CONTENT_WORDS, PrefixCache

__all__ = ["MODEL", "EngineSettings", "EngineStats", "Sequence", "SimEngine", "answer_word"]

MODEL = "sim"  # the name the engine is served under: a simulated engine, never called vLLM


@dataclass(slots=True, frozen=True)
class EngineSettings:
    slots: int = 4
    step_s: float = 0.025
    prefill_s_per_token: float = 0.0003
    prefill_chunk: int = 512
    cache_tokens: int = 1536


@dataclass(slots=True)
class EngineStats:
    """Totals since the last reset, as the engine itself saw them."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    cancelled: int = 0


@dataclass(slots=True)
class Sequence:
    """One request inside the engine; ``cached`` is known once it is admitted."""

    prompt: tuple[int, ...]
    max_tokens: int
    out: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    cached: int = 0
    to_prefill: int = 0
    generated: int = 0
    cancelled: bool = False


def answer_word(prompt: tuple[int, ...], position: int) -> str:
    """The deterministic ``position``-th word of the answer to ``prompt`` (one token each)."""
    seed = hashlib.blake2b(repr(prompt).encode(), digest_size=8).digest()
    digest = hashlib.blake2b(seed + position.to_bytes(4, "little"), digest_size=4).digest()
    return " " + CONTENT_WORDS[int.from_bytes(digest, "little") % len(CONTENT_WORDS)]


class SimEngine:
    def __init__(self, settings: EngineSettings | None = None) -> None:
        self.settings = settings or EngineSettings()
        self.tokenizer = WordTokenizer()
        self.cache = PrefixCache(self.settings.cache_tokens)
        self.stats = EngineStats()
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return sum(1 for s in self._waiting if not s.cancelled)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="sim-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def reset(self) -> bool:
        """Forget the cache and the totals; refused (False) while any request is in the engine."""
        if self._running or self.num_waiting:
            return False
        self._waiting.clear()
        self.cache = PrefixCache(self.settings.cache_tokens)
        self.stats = EngineStats()
        return True

    def submit(self, prompt: tuple[int, ...], max_tokens: int) -> Sequence:
        """Queue a request at the back of the FIFO; read its words with ``stream``."""
        seq = Sequence(prompt, max(1, max_tokens))
        self.stats.requests += 1
        self._waiting.append(seq)
        self._wake.set()
        return seq

    async def stream(self, seq: Sequence) -> AsyncIterator[str]:
        """The sequence's words as the engine makes them; leaving early cancels it."""
        try:
            while True:
                word = await seq.out.get()
                if word is None:
                    return
                yield word
        finally:
            if seq.generated < seq.max_tokens:
                seq.cancelled = True  # the client went away: free the slot at the next step

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_step = loop.time()
        while True:
            self._admit()
            if not self._running:
                self._wake.clear()
                await self._wake.wait()
                next_step = loop.time()
                continue
            budget = self.settings.prefill_chunk
            prefilled = 0
            ready = []
            for seq in self._running:
                if seq.to_prefill:
                    take = min(budget, seq.to_prefill)
                    seq.to_prefill -= take
                    budget -= take
                    prefilled += take
                if not seq.to_prefill:
                    ready.append(seq)
            # Deadline-based: a late wake-up shortens the next sleep instead of stretching time.
            next_step += self.settings.step_s + prefilled * self.settings.prefill_s_per_token
            await asyncio.sleep(max(0.0, next_step - loop.time()))
            next_step = max(next_step, loop.time() - self.settings.step_s)
            for seq in ready:
                self._emit(seq)
            self._running = [s for s in self._running if not self._done(s)]

    def _admit(self) -> None:
        while self._waiting and len(self._running) < self.settings.slots:
            seq = self._waiting.popleft()
            if seq.cancelled:
                self.stats.cancelled += 1
                continue
            seq.cached = self.cache.lookup_and_insert(seq.prompt)
            seq.to_prefill = len(seq.prompt) - seq.cached
            self.stats.prompt_tokens += len(seq.prompt)
            self.stats.cached_tokens += seq.cached
            self._running.append(seq)

    def _emit(self, seq: Sequence) -> None:
        if seq.cancelled:
            return
        seq.out.put_nowait(answer_word(seq.prompt, seq.generated))
        seq.generated += 1
        self.stats.generated_tokens += 1
        if seq.generated >= seq.max_tokens:
            seq.out.put_nowait(None)

    def _done(self, seq: Sequence) -> bool:
        if seq.cancelled and seq.generated < seq.max_tokens:
            self.stats.cancelled += 1
            return True
        return seq.generated >= seq.max_tokens
