"""The ``sim`` provider: a deterministic simulated engine for fast tests and benchmarks.

It needs no model and no tokenizer. Its answer is a function of the prompt's token ids:
a reasoning part (attributed by the engine on chat; in-band ``<think>`` markers on
completions, the way a raw prompt makes a real reasoning model think), then content. It keeps
a block-hashed prefix cache like vLLM's, so repeated prompts report cached tokens. Never the
default provider.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from fairgate.replicas.base import EngineLoad
from fairgate.replicas.errors import ReplicaFailed, ReplicaUnavailable
from fairgate.replicas.stream import (
    EngineDelta,
    EngineEvent,
    EnginePrompt,
    EngineRequest,
    EngineUsage,
    Part,
)

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
BLOCK = 16
START_ID, END_ID = 900_001, 900_002


@dataclass(slots=True)
class SimSettings:
    reasoning_tokens: int = 8
    content_tokens: int = 12
    seconds_per_token: float = 0.0
    seconds_per_prompt_token: float = 0.0
    cache_tokens: int = 100_000


def _word(seed: bytes, position: int, words: tuple[str, ...]) -> tuple[str, int]:
    digest = hashlib.blake2b(seed + position.to_bytes(4, "little"), digest_size=4).digest()
    index = int.from_bytes(digest, "little")
    return " " + words[index % len(words)], 1000 + index % 50_000


class PrefixCache:
    """Full blocks of prompt tokens, chained by hash and LRU-evicted, as vLLM caches them."""

    def __init__(self, capacity_tokens: int) -> None:
        self._blocks: OrderedDict[bytes, None] = OrderedDict()
        self._capacity = capacity_tokens // BLOCK

    def lookup_and_insert(self, tokens: tuple[int, ...]) -> int:
        cached, matching, parent = 0, True, b""
        for start in range(0, len(tokens) - len(tokens) % BLOCK, BLOCK):
            block = tokens[start : start + BLOCK]
            parent = hashlib.blake2b(parent + repr(block).encode(), digest_size=16).digest()
            if matching and parent in self._blocks:
                cached += BLOCK
                self._blocks.move_to_end(parent)
            else:
                matching = False
                self._blocks[parent] = None
        while len(self._blocks) > self._capacity:
            self._blocks.popitem(last=False)
        return cached


class SimReplica:
    def __init__(self, replica_id: str, model: str, settings: SimSettings | None = None) -> None:
        self.replica_id = replica_id
        self.model = model
        self.url: str | None = None
        self.settings = settings or SimSettings()
        self.cache = PrefixCache(self.settings.cache_tokens)
        self.alive = True
        self.running = 0
        self.served = 0
        self._fail_after: int | None = None

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
        self.running += 1
        try:
            async for event in self._generate(request):
                yield event
        finally:
            self.running -= 1
            self.served += 1

    async def _generate(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        prompt = request.prompt_token_ids
        yield EnginePrompt(prompt)
        cached = self.cache.lookup_and_insert(prompt)
        prefill = (len(prompt) - cached) * self.settings.seconds_per_prompt_token
        if prefill:
            await asyncio.sleep(prefill)
        budget = _max_tokens(request.body)
        sent = reasoning = 0
        finish = "stop"
        for text, token_id, part, hidden in self._steps(request, prompt):
            if budget is not None and sent >= budget:
                finish = "length"
                break
            if not self.alive or (self._fail_after is not None and sent >= self._fail_after):
                raise ReplicaFailed(
                    f"{self.replica_id} died mid-stream", replica_id=self.replica_id
                )
            if self.settings.seconds_per_token:
                await asyncio.sleep(self.settings.seconds_per_token)
            else:
                await asyncio.sleep(0)
            sent += 1
            reasoning += hidden
            logprobs = _logprobs(text, token_id, request.body)
            yield EngineDelta(text, part, (token_id,), logprobs)
        yield EngineDelta("", Part.CONTENT, (), [], finish)
        yield EngineUsage(len(prompt), sent, cached, reasoning)

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
        return EngineLoad(self.running, 0)

    async def aclose(self) -> None:
        self.alive = False


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
