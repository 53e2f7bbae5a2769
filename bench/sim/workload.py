"""Workload generators for the simulator: who sends what, when.

Prompts are built from *documents* (long shared prefixes: a system prompt, a RAG document, a
conversation so far) plus a short unique question, so prefix caching matters the way it does
in document QA and multi-turn chat. Every generator takes a ``random.Random``: same seed, same
workload.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

VOCAB = 32_000


@dataclass(slots=True, frozen=True)
class Request:
    request_id: str
    tenant: str
    at: float
    prompt: tuple[int, ...]
    output: int  # tokens the engine will generate (>= 1)
    max_tokens: int | None = None  # what the client declares (default: ``output``)
    session: str = ""  # requests of one session run one after another
    think: float = 0.0  # seconds after the session's previous request finished


@dataclass(slots=True, frozen=True)
class TenantLoad:
    """One tenant's traffic: Poisson arrivals at ``rate`` per second; each prompt is one of
    ``documents`` (chosen uniformly) followed by a question of ``question`` tokens."""

    tenant: str
    rate: float
    documents: tuple[tuple[int, ...], ...]
    question: tuple[int, int] = (20, 80)
    output: tuple[int, int] = (50, 250)


def documents(
    rng: random.Random, count: int, length: tuple[int, int]
) -> tuple[tuple[int, ...], ...]:
    return tuple(
        tuple(rng.randrange(VOCAB) for _ in range(rng.randint(*length))) for _ in range(count)
    )


def generate(rng: random.Random, loads: list[TenantLoad], duration: float) -> list[Request]:
    """All tenants' requests over ``[0, duration)``, in arrival order."""
    requests: list[Request] = []
    for load in loads:
        t = rng.expovariate(load.rate)
        n = 0
        while t < duration:
            doc = rng.choice(load.documents)
            question = tuple(rng.randrange(VOCAB) for _ in range(rng.randint(*load.question)))
            requests.append(
                Request(
                    f"{load.tenant}-{n}",
                    load.tenant,
                    t,
                    doc + question,
                    max(1, rng.randint(*load.output)),
                )
            )
            n += 1
            t += rng.expovariate(load.rate)
    requests.sort(key=lambda r: (r.at, r.request_id))
    return requests


def flood(
    rng: random.Random, duration: float = 60.0, rate: float = 5.0, factor: float = 10.0
) -> list[Request]:
    """One tenant floods with ``factor`` times the requests of two others. Each tenant has its
    own six documents (about 40,000 tokens in all: more than one replica caches, less than
    four do). At the default rate each light tenant alone asks for about twice a
    third of the default cluster (4 replicas x 8 slots), so all three stay backlogged and the
    fair outcome is equal service."""
    loads = [
        TenantLoad("flood", rate * factor, documents(rng, 6, (1500, 3000))),
        TenantLoad("light-a", rate, documents(rng, 6, (1500, 3000))),
        TenantLoad("light-b", rate, documents(rng, 6, (1500, 3000))),
    ]
    return generate(rng, loads, duration)


def shared_prefix(rng: random.Random, duration: float = 60.0, rate: float = 3.0) -> list[Request]:
    """Four equally demanding tenants with different locality: "hot" reuses two documents,
    "warm" sixteen, "cold" prompts share nothing; "cross" draws from hot's and warm's documents,
    so locality across tenants pays off too."""
    hot = documents(rng, 2, (2000, 3000))
    warm = documents(rng, 16, (1500, 2500))
    cold = tuple(
        tuple(rng.randrange(VOCAB) for _ in range(rng.randint(300, 800))) for _ in range(400)
    )
    loads = [
        TenantLoad("hot", rate, hot),
        TenantLoad("warm", rate, warm),
        TenantLoad("cold", rate, cold),
        TenantLoad("cross", rate, hot + warm),
    ]
    return generate(rng, loads, duration)


SCENARIOS = {"flood": flood, "shared_prefix": shared_prefix}
