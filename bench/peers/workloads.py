"""The workloads, driven through the official ``openai`` async client, one client per tenant.

flood      three tenants start together (in a seeded mixed order) in closed loop; ``heavy``
           keeps 10x the requests in flight of each light tenant (40 vs 4). Each tenant's
           requests share a long tenant-specific system prompt, so prefix locality matters
           (two such prompts fit in one engine's cache, three do not). Tokens are counted as
           they arrive inside the contention window (every tenant backlogged); afterwards no
           new request starts and the ones in flight finish.
steady     open-loop Poisson arrivals (fixed seed) from three equal tenants; every request
           opens with one of a few long shared documents, more than one replica's prefix
           cache holds but fewer than two hold together: what a cache-aware router can win.
idle       one request at a time on an idle system: time to first token is the gateway's
           added latency (compared with ``direct``).

Every request streams with ``stream_options.include_usage``; a token is one word of the sim
engine's answer, so tokens are counted from the text, whatever a gateway does to chunking.
Failed requests are counted, never retried (``max_retries=0``).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam

from bench.peers.engine import MODEL
from bench.peers.gateways import Target

__all__ = [
    "FLOOD_TENANTS",
    "STEADY_TENANTS",
    "FloodSpec",
    "Outcome",
    "RequestRecord",
    "SteadySpec",
    "idle_probe",
    "run_flood",
    "run_steady",
]

FLOOD_TENANTS = ("heavy", "light1", "light2")
STEADY_TENANTS = ("a", "b", "c")
_VOCABULARY = [
    "cache",
    "queue",
    "tenant",
    "replica",
    "token",
    "prefix",
    "router",
    "engine",
    "batch",
    "slot",
    "latency",
    "stream",
    "request",
    "deficit",
    "quantum",
    "fairness",
    "schedule",
    "admission",
    "throughput",
    "model",
    "prompt",
    "answer",
    "context",
    "window",
    "ledger",
    "receipt",
    "signature",
    "merkle",
    "audit",
    "metric",
    "gauge",
    "counter",
    "budget",
    "policy",
    "weight",
    "service",
    "share",
    "credit",
    "refill",
    "arrival",
    "dispatch",
    "finish",
    "reason",
    "content",
    "system",
    "user",
    "assistant",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_VOCABULARY) for _ in range(words))


@dataclass(slots=True, frozen=True)
class FloodSpec:
    window_s: float = 10.0
    heavy_in_flight: int = 40
    light_in_flight: int = 4
    system_words: int = 600
    question_words: int = 12
    max_tokens: int = 32
    drain_timeout_s: float = 60.0


@dataclass(slots=True, frozen=True)
class SteadySpec:
    window_s: float = 10.0
    rate_per_s: float = 6.0  # all tenants together
    documents: int = 6
    document_words: int = 450
    question_words: int = 12
    max_tokens: int = 32
    drain_timeout_s: float = 60.0


@dataclass(slots=True)
class RequestRecord:
    tenant: str
    started: float  # seconds since the run's start
    ttft: float | None = None
    latency: float | None = None
    tokens: int = 0
    cached_tokens: int | None = None  # as the response's usage reported it
    error: str | None = None


@dataclass(slots=True)
class Outcome:
    """One workload through one target."""

    window_s: float
    tenants: tuple[str, ...]
    records: list[RequestRecord] = field(default_factory=list)
    window_tokens: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


class _Clients:
    """Per tenant, one ``AsyncOpenAI`` per base URL; round robin when there are several."""

    def __init__(self, target: Target, tenants: tuple[str, ...]) -> None:
        self._by_tenant = {
            t: [
                openai.AsyncOpenAI(
                    base_url=url, api_key=target.keys[t], max_retries=0, timeout=300.0
                )
                for url in target.base_urls
            ]
            for t in tenants
        }
        self._turn = itertools.count()

    def pick(self, tenant: str) -> openai.AsyncOpenAI:
        clients = self._by_tenant[tenant]
        return clients[next(self._turn) % len(clients)]

    async def aclose(self) -> None:
        for clients in self._by_tenant.values():
            for client in clients:
                await client.close()


def _messages(system: str | None, user: str) -> list[ChatCompletionMessageParam]:
    messages: list[ChatCompletionMessageParam] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user})
    return messages


async def _one(
    clients: _Clients,
    tenant: str,
    messages: list[ChatCompletionMessageParam],
    max_tokens: int,
    t0: float,
    window_end: float,
    outcome: Outcome,
) -> RequestRecord:
    started = time.perf_counter()
    record = RequestRecord(tenant, started - t0)
    try:
        stream = await clients.pick(tenant).chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            user=tenant,
        )
        async for chunk in stream:
            if chunk.usage is not None and chunk.usage.prompt_tokens_details is not None:
                record.cached_tokens = chunk.usage.prompt_tokens_details.cached_tokens
            for choice in chunk.choices:
                words = len((choice.delta.content or "").split())
                if not words:
                    continue
                now = time.perf_counter()
                if record.ttft is None:
                    record.ttft = now - started
                record.tokens += words
                if now <= window_end:
                    outcome.window_tokens[tenant] = outcome.window_tokens.get(tenant, 0) + words
        record.latency = time.perf_counter() - started
        if record.tokens != max_tokens:
            record.error = f"got {record.tokens} of {max_tokens} tokens"
    except Exception as error:  # any failure is a data point of this run, shown in 'err'
        record.error = f"{type(error).__name__}: {str(error)[:120]}"
    outcome.records.append(record)
    return record


async def _drain(tasks: Sequence[asyncio.Task[Any]], timeout_s: float) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def run_flood(target: Target, spec: FloodSpec, seed: int = 1) -> Outcome:
    rng = random.Random(seed)
    systems = {
        t: f"You answer for tenant {t}. " + _text(rng, spec.system_words) for t in FLOOD_TENANTS
    }
    outcome = Outcome(spec.window_s, FLOOD_TENANTS)
    clients = _Clients(target, FLOOD_TENANTS)
    counters = dict.fromkeys(FLOOD_TENANTS, 0)
    t0 = time.perf_counter()
    window_end = t0 + spec.window_s

    async def worker(tenant: str, worker_rng: random.Random) -> None:
        while time.perf_counter() < window_end:
            counters[tenant] += 1
            question = f"Request {counters[tenant]}: " + _text(worker_rng, spec.question_words)
            messages = _messages(systems[tenant], question)
            record = await _one(clients, tenant, messages, spec.max_tokens, t0, window_end, outcome)
            if record.error and time.perf_counter() < window_end:
                await asyncio.sleep(0.05)  # a failing gateway must not become a busy loop

    workers = [
        (tenant, n)
        for tenant in FLOOD_TENANTS
        for n in range(spec.heavy_in_flight if tenant == "heavy" else spec.light_in_flight)
    ]
    rng.shuffle(workers)  # the opening burst reaches the gateway in a mixed, seeded order
    tasks = [
        asyncio.create_task(worker(tenant, random.Random(f"{seed}-{tenant}-{n}")))
        for tenant, n in workers
    ]
    try:
        await _drain(tasks, spec.window_s + spec.drain_timeout_s)
    finally:
        await clients.aclose()
    outcome.wall_s = time.perf_counter() - t0
    return outcome


async def run_steady(target: Target, spec: SteadySpec, seed: int = 1) -> Outcome:
    rng = random.Random(seed)
    documents = [f"Document {d}. " + _text(rng, spec.document_words) for d in range(spec.documents)]
    arrivals: list[tuple[float, str, int, str]] = []
    now = 0.0
    while True:
        now += rng.expovariate(spec.rate_per_s)
        if now >= spec.window_s:
            break
        tenant = rng.choice(STEADY_TENANTS)
        arrivals.append((now, tenant, rng.randrange(spec.documents), _text(rng, 12)))
    outcome = Outcome(spec.window_s, STEADY_TENANTS)
    clients = _Clients(target, STEADY_TENANTS)
    t0 = time.perf_counter()
    window_end = t0 + spec.window_s
    tasks: list[asyncio.Task[RequestRecord]] = []
    try:
        for at, tenant, document, question in arrivals:
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            messages = _messages(documents[document], f"Question from {tenant}: {question}")
            tasks.append(
                asyncio.create_task(
                    _one(clients, tenant, messages, spec.max_tokens, t0, window_end, outcome)
                )
            )
        await _drain(tasks, spec.drain_timeout_s)
    finally:
        await clients.aclose()
    outcome.wall_s = time.perf_counter() - t0
    return outcome


async def idle_probe(target: Target, requests: int = 20, warmup: int = 5) -> list[float]:
    """Times to first token of ``requests`` sequential small requests, after ``warmup``."""
    tenant = FLOOD_TENANTS[1]
    clients = _Clients(target, (tenant,))
    outcome = Outcome(0.0, (tenant,))
    messages = _messages(None, "Say something short.")
    ttfts: list[float] = []
    try:
        for n in range(warmup + requests):
            t0 = time.perf_counter()
            record = await _one(clients, tenant, messages, 4, t0, t0, outcome)
            if record.error:
                raise RuntimeError(f"idle probe failed: {record.error}")
            if n >= warmup and record.ttft is not None:
                ttfts.append(record.ttft)
    finally:
        await clients.aclose()
    return ttfts
