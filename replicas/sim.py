"""The ``sim`` provider: a deterministic simulated engine for fast tests and benchmarks.

It needs no model and no tokenizer. Its answer is a function of the prompt's token ids:
a reasoning part (attributed by the engine on chat; in-band ``<think>`` markers on
completions, the way a raw prompt makes a real reasoning model think), then content. It keeps
a block-hashed prefix cache like vLLM's, so repeated prompts report cached tokens, and it has
vLLM's capacity: batch slots, its own FIFO past them, step times that grow with the batch and
with prefill (``replicas.engine_model``, the engine the benchmarks simulate too). Never the
default provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from fairgate.replicas.base import EngineLoad
from fairgate.replicas.engine_model import BLOCK, EngineModel, EngineParams, PrefixCache
from fairgate.replicas.errors import ReplicaFailed, ReplicaUnavailable
from fairgate.replicas.stream import (
    EngineDelta,
    EngineEvent,
    EnginePrompt,
    EngineRequest,
    EngineUsage,
    Part,
)

__all__ = [
    "BLOCK",
    "CONTENT_WORDS",
    "REASONING_WORDS",
    "PrefixCache",
    "SimReplica",
    "SimSettings",
]

# Content and reasoning draw on different words, so a test can tell any leaked reasoning.
CONTENT_WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
)
REASONING_WORDS = ("ponder", "mull", "reckon", "deduce", "surmise", "weigh", "muse", "infer")
START_ID, END_ID = 900_001, 900_002


@dataclass(slots=True)
class SimSettings:
    """The answer's shape and the engine's capacity. ``seconds_per_token`` is the step time,
    ``seconds_per_seq`` its growth per running sequence, ``seconds_per_prompt_token`` the
    prefill cost of one uncached token (at most ``prefill_chunk`` per step); all 0 by default,
    so fast tests need no sleeps. ``max_num_seqs`` defaults to vLLM's 256: an engine that is
    full only when a test or benchmark asks for it (``replicas.engine_model``)."""

    reasoning_tokens: int = 8
    content_tokens: int = 12
    seconds_per_token: float = 0.0
    seconds_per_prompt_token: float = 0.0
    cache_tokens: int = 100_000
    max_num_seqs: int = 256
    seconds_per_seq: float = 0.0
    prefill_chunk: int = 512

    def params(self) -> EngineParams:
        return EngineParams(
            max_num_seqs=self.max_num_seqs,
            step_s=self.seconds_per_token,
            step_s_per_seq=self.seconds_per_seq,
            prefill_s_per_token=self.seconds_per_prompt_token,
            prefill_chunk=self.prefill_chunk,
            cache_tokens=self.cache_tokens,
        )


def _word(seed: bytes, position: int, words: tuple[str, ...]) -> tuple[str, int]:
    digest = hashlib.blake2b(seed + position.to_bytes(4, "little"), digest_size=4).digest()
    index = int.from_bytes(digest, "little")
    return " " + words[index % len(words)], 1000 + index % 50_000


class SimReplica:
    """One simulated vLLM replica: an ``EngineModel`` stepped on the event loop."""

    def __init__(self, replica_id: str, model: str, settings: SimSettings | None = None) -> None:
        self.replica_id = replica_id
        self.model = model
        self.url: str | None = None
        self.settings = settings or SimSettings()
        self.engine = EngineModel(self.settings.params())
        self.alive = True
        self.served = 0
        self._fail_after: int | None = None
        self._outputs: dict[str, asyncio.Queue[int | None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._keys = itertools.count()

    @property
    def running(self) -> int:
        """Generations in progress (queued in the engine or running)."""
        return len(self._outputs)

    def kill(self, *, after_tokens: int | None = None) -> None:
        """Test hook: die now, or after streaming ``after_tokens`` more tokens in each stream."""
        if after_tokens is None:
            self.alive = False
        else:
            self._fail_after = after_tokens

    def revive(self) -> None:
        self.alive = True
        self._fail_after = None

    async def stream(self, request: EngineRequest) -> AsyncGenerator[EngineEvent, None]:
        if not self.alive:
            raise ReplicaUnavailable(f"{self.replica_id} is down", replica_id=self.replica_id)
        key = f"{self.replica_id}-{next(self._keys)}"
        try:
            async for event in self._generate(key, request):
                yield event
        finally:
            self.engine.cancel(key)
            self._outputs.pop(key, None)
            self.served += 1

    async def _generate(self, key: str, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        prompt = request.prompt_token_ids
        yield EnginePrompt(prompt)
        steps = self._steps(request, prompt)
        budget = _max_tokens(request.body)
        count = len(steps) if budget is None else min(budget, len(steps))
        cached = sent = reasoning = 0
        if count:
            out: asyncio.Queue[int | None] = asyncio.Queue()
            self._outputs[key] = out
            self.engine.submit(key, prompt, count)
            self._ensure_loop()
            while (item := await out.get()) is not None:
                cached = max(cached, item)
                if not self.alive or (self._fail_after is not None and sent >= self._fail_after):
                    raise ReplicaFailed(
                        f"{self.replica_id} died mid-stream", replica_id=self.replica_id
                    )
                text, token_id, part, hidden = steps[sent]
                sent += 1
                reasoning += hidden
                yield EngineDelta(text, part, (token_id,), _logprobs(text, token_id, request.body))
        finish = "length" if sent < len(steps) else "stop"
        yield EngineDelta("", Part.CONTENT, (), [], finish)
        yield EngineUsage(len(prompt), sent, cached, reasoning)

    def _ensure_loop(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.replica_id)

    async def _loop(self) -> None:
        """Step the engine; each step's tokens are delivered when its time has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if not self.engine.has_work():
                self._wake.clear()
                await self._wake.wait()
                deadline = loop.time()
                continue
            step = self.engine.step()
            deadline += step.duration
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            # A late wake-up shortens the next step instead of bursting to catch up.
            deadline = max(deadline, loop.time() - self.settings.seconds_per_token)
            for key, cached in step.first_tokens:
                self._deliver(key, cached)
            for key in step.tokens:
                self._deliver(key, 0)
            for key in step.finished:
                self._deliver(key, None)

    def _deliver(self, key: str, item: int | None) -> None:
        out = self._outputs.get(key)
        if out is not None:
            out.put_nowait(item)

    def _steps(
        self, request: EngineRequest, prompt: tuple[int, ...]
    ) -> list[tuple[str, int, Part, bool]]:
        """(text, token id, engine attribution, truly hidden) for each step of the answer."""
        seed = hashlib.sha256(repr(prompt).encode()).digest()
        hidden = [_word(seed, n, REASONING_WORDS) for n in range(self.settings.reasoning_tokens)]
        visible = [
            (t, i, Part.CONTENT, False)
            for t, i in (
                _word(seed, 10_000 + n, CONTENT_WORDS) for n in range(self.settings.content_tokens)
            )
        ]
        if request.endpoint == "chat":
            return [(t, i, Part.REASONING, True) for t, i in hidden] + visible
        if not hidden:
            return visible
        # Like vLLM, the marker tokens are generated but are not reasoning tokens.
        return [
            ("<think>", START_ID, Part.CONTENT, False),
            *[(t, i, Part.CONTENT, True) for t, i in hidden],
            ("</think>", END_ID, Part.CONTENT, False),
            *visible,
        ]

    async def check_health(self) -> bool:
        return self.alive

    async def load(self) -> EngineLoad | None:
        return EngineLoad(self.engine.num_running, self.engine.num_waiting)

    async def aclose(self) -> None:
        self.alive = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._task
            self._task = None


def _max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return None if value is None else int(value)


def _top_count(body: dict[str, Any]) -> int:
    if body.get("top_logprobs") is not None:
        return int(body["top_logprobs"])
    requested = body.get("logprobs")
    return requested if isinstance(requested, int) and not isinstance(requested, bool) else 0


def _logprobs(text: str, token_id: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    if body.get("logprobs") is None or body.get("logprobs") is False:
        return []
    top = _top_count(body)
    value = -((token_id % 97) / 97.0)
    return [
        {
            "token": text,
            "logprob": value,
            "bytes": list(text.encode()),
            "top_logprobs": [{"token": text, "logprob": value, "bytes": list(text.encode())}][:top],
        }
    ]
