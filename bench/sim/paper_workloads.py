"""The DLPM paper's workloads (arXiv 2501.14312, §6), seeded, plus bench.peers' flood.

Each returns a ``Workload``: requests (sessions for closed-loop clients) and the window over
which fairness is measured. Same seed, same workload.

- ``long_doc_qa``: LooGLE-like. Each tenant has documents of 10k+ tokens and asks many short
  questions about them (prefill-bound: locality is most of the throughput).
- ``tree_of_thought``: each problem is a tree; every request extends its parent's prompt (a
  growing shared prefix), children are sent when the parent's answer is back.
- ``multi_turn``: closed-loop chat with think time; each turn's prompt is the conversation so
  far plus a new message.
- ``misbehaving``: S1, one tenant sends ``k`` times the others' rate; S2, one tenant sends
  prompts ``k`` times longer.
- ``flood``: bench.peers' flood in the simulator: closed-loop clients, ``heavy`` keeps 10 times
  the light tenants' requests in flight; each tenant's system prompt fits in some cache.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench.sim.workload import VOCAB, Request


@dataclass(slots=True, frozen=True)
class Workload:
    name: str
    requests: list[Request]
    window: float


def _tokens(rng: random.Random, n: int) -> tuple[int, ...]:
    return tuple(rng.randrange(VOCAB) for _ in range(n))


def _poisson(rng: random.Random, rate: float, duration: float) -> list[float]:
    times, t = [], rng.expovariate(rate)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def long_doc_qa(
    rng: random.Random,
    tenants: int = 4,
    docs: int = 2,
    doc_len: tuple[int, int] = (8_000, 12_000),
    rate: float = 0.5,
    duration: float = 120.0,
) -> Workload:
    requests = []
    for t in range(tenants):
        documents = [_tokens(rng, rng.randint(*doc_len)) for _ in range(docs)]
        for i, at in enumerate(_poisson(rng, rate, duration)):
            prompt = rng.choice(documents) + _tokens(rng, rng.randint(20, 60))
            requests.append(Request(f"t{t}-{i}", f"t{t}", at, prompt, rng.randint(20, 80)))
    return Workload("long_doc_qa", sorted(requests, key=lambda r: r.at), duration)


def tree_of_thought(
    rng: random.Random,
    tenants: int = 5,
    trees: int = 6,
    depth: int = 3,
    branching: int = 3,
    duration: float = 120.0,
) -> Workload:
    """Each tree is walked depth-first as one session (a client waits for each answer)."""
    requests = []
    for t in range(tenants):
        for k in range(trees):
            root = _tokens(rng, rng.randint(800, 1500))
            session = f"t{t}-tree{k}"
            n = 0

            def walk(
                prefix: tuple[int, ...], level: int, session: str = session, t: int = t
            ) -> None:
                nonlocal n
                prompt = prefix + _tokens(rng, rng.randint(30, 80))
                at = rng.uniform(0, 5) if n == 0 else 0.0
                requests.append(
                    Request(
                        f"{session}-{n}",
                        f"t{t}",
                        at,
                        prompt,
                        rng.randint(60, 150),
                        None,
                        session,
                        0.0,
                    )
                )
                n += 1
                if level < depth:
                    for _ in range(branching):
                        walk(prompt + _tokens(rng, 60), level + 1)

            walk(root, 1)
    return Workload("tree_of_thought", requests, duration)


def multi_turn(
    rng: random.Random,
    tenants: int = 5,
    users: int = 4,
    turns: int = 12,
    think: tuple[float, float] = (1.0, 4.0),
    duration: float = 120.0,
) -> Workload:
    requests = []
    for t in range(tenants):
        system = _tokens(rng, 400)
        for u in range(users):
            history = system
            session = f"t{t}-u{u}"
            for k in range(turns):
                history = history + _tokens(rng, rng.randint(30, 120))
                out = rng.randint(50, 200)
                at = rng.uniform(0, 3) if k == 0 else 0.0
                requests.append(
                    Request(
                        f"{session}-{k}",
                        f"t{t}",
                        at,
                        history,
                        out,
                        None,
                        session,
                        rng.uniform(*think),
                    )
                )
                history = history + _tokens(rng, out)  # the answer joins the conversation
    return Workload("multi_turn", requests, duration)


def misbehaving(
    rng: random.Random,
    kind: str = "S1",
    tenants: int = 5,
    k: float = 10.0,
    rate: float = 1.0,
    duration: float = 120.0,
) -> Workload:
    """S1: tenant t0 sends k times the rate; S2: t0's prompts are k times longer."""
    requests = []
    for t in range(tenants):
        bad = t == 0
        docs = [_tokens(rng, rng.randint(1500, 2500)) for _ in range(3)]
        r = rate * (k if bad and kind == "S1" else 1.0)
        for i, at in enumerate(_poisson(rng, r, duration)):
            prompt = rng.choice(docs) + _tokens(rng, rng.randint(20, 80))
            if bad and kind == "S2":
                prompt = prompt + _tokens(rng, int(len(prompt) * (k - 1)))
            requests.append(Request(f"t{t}-{i}", f"t{t}", at, prompt, rng.randint(50, 150)))
    return Workload(f"misbehaving_{kind}", sorted(requests, key=lambda r: r.at), duration)


def flood(
    rng: random.Random,
    heavy: int = 40,
    light: int = 4,
    system: int = 1100,
    output: int = 32,
    duration: float = 60.0,
) -> Workload:
    """bench.peers' flood: closed-loop clients, ``heavy`` in flight for one tenant, ``light``
    for each of two others, each tenant's own system prompt plus a unique question."""
    requests = []
    for tenant, clients in (("heavy", heavy), ("light1", light), ("light2", light)):
        prompt = _tokens(rng, system)
        per_client = int(duration * 2)  # more than any client can finish in the window
        for c in range(clients):
            session = f"{tenant}-c{c}"
            for i in range(per_client):
                at = rng.uniform(0, 0.05) if i == 0 else 0.0
                requests.append(
                    Request(
                        f"{session}-{i}",
                        tenant,
                        at,
                        prompt + _tokens(rng, 12),
                        output,
                        output,
                        session,
                        0.0,
                    )
                )
    return Workload("flood", requests, duration)
