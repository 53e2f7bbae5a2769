"""A replica's engine, modelled: continuous batching, an LRU prefix cache, a FIFO of its own.

Cost model (per step of the batch):

    step time = decode_s + decode_s_per_seq * running + prefill_s_per_token * new uncached tokens

A request joins the batch when a slot is free (else waits in the engine's FIFO: exactly what
the scheduler's in-flight limit is there to avoid), is prefilled in its first step (which
produces its first token), then decodes one token per step. Its prompt goes into the engine's
own prefix cache (a ``scheduler.radix.RadixTree`` used as a plain data structure, with its own
budget), whose hit is what the engine reports as ``cached_tokens``, in whole blocks as vLLM
does, and never the last prompt token.

Defaults are round numbers in the range of a small model on one GPU: 25 ms per decode step,
1 ms more per running sequence, 5,000 prefill tokens per second, 8 sequences per batch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from fairgate.scheduler.radix import RadixTree


@dataclass(slots=True, frozen=True)
class CostModel:
    decode_s: float = 0.025
    decode_s_per_seq: float = 0.001
    prefill_s_per_token: float = 0.0002
    batch_slots: int = 8
    cache_tokens: int = 30_000
    block_tokens: int = 16


@dataclass(slots=True)
class _Sequence:
    job_id: str
    namespace: tuple[str, str]
    prompt: tuple[int, ...]
    remaining: int
    cached: int | None = None  # None until prefilled


@dataclass(slots=True)
class StepOutput:
    first_tokens: list[tuple[str, int]] = field(default_factory=list)  # (job, cached tokens)
    tokens: list[str] = field(default_factory=list)  # one decoded token each
    finished: list[str] = field(default_factory=list)


class Engine:
    def __init__(self, cost: CostModel) -> None:
        self.cost = cost
        self.cache = RadixTree(cost.cache_tokens)
        self.waiting: deque[_Sequence] = deque()
        self.running: list[_Sequence] = []
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.busy = False

    def submit(
        self, job_id: str, namespace: tuple[str, str], prompt: tuple[int, ...], output: int
    ) -> None:
        self.waiting.append(_Sequence(job_id, namespace, prompt, output))

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def step(self) -> tuple[float, StepOutput]:
        """Run one batch step; returns its duration and what it produced (at its end)."""
        out = StepOutput()
        prefill = 0
        while self.waiting and len(self.running) < self.cost.batch_slots:
            seq = self.waiting.popleft()
            hit = self.cache.insert(seq.namespace, seq.prompt)
            block = self.cost.block_tokens
            seq.cached = min(hit // block * block, max(0, len(seq.prompt) - 1))
            prefill += len(seq.prompt) - seq.cached
            self.prompt_tokens += len(seq.prompt)
            self.cached_tokens += seq.cached
            self.running.append(seq)
            out.first_tokens.append((seq.job_id, seq.cached))
        new = {job_id for job_id, _ in out.first_tokens}
        for seq in self.running:
            if seq.job_id not in new:
                out.tokens.append(seq.job_id)
            seq.remaining -= 1
        still = []
        for seq in self.running:
            if seq.remaining <= 0:
                out.finished.append(seq.job_id)
            else:
                still.append(seq)
        duration = (
            self.cost.decode_s
            + self.cost.decode_s_per_seq * len(self.running)
            + self.cost.prefill_s_per_token * prefill
        )
        self.running = still
        return duration, out
