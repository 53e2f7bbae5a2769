"""Shared drivers for the scheduler tests.

``backlog`` runs one replica to exhaustion with every job queued at time 0 and a scripted
engine, recording each tenant's *true* service (what the engine really did: uncached prompt
tokens at the first token, generated tokens as they stream) after every event while all
tenants are still backlogged. The fairness bounds are statements about exactly that.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from fairgate.scheduler import Job, Scheduler, SchedulerConfig


@dataclass(slots=True)
class Spec:
    tenant: str
    prompt: tuple[int, ...]
    output: int


@dataclass(slots=True)
class Trace:
    """``gaps``: weight-normalised service of the first two tenants (by name), a minus b,
    sampled while every tenant waits.
    ``served``: true weighted service per tenant at the end of the backlogged period."""

    gaps: list[float] = field(default_factory=list)
    served: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # tenants in admission order

    @property
    def spread(self) -> float:
        return max(self.gaps) - min(self.gaps) if self.gaps else 0.0


def make_specs(
    rng: random.Random, tenants: list[str], per_tenant: int, max_prompt: int, max_output: int
) -> list[Spec]:
    """Prompts from a few shared prefixes plus random tails, so the prefix index gets hits."""
    bases = [
        tuple(rng.randrange(4) for _ in range(rng.randrange(1, max_prompt + 1))) for _ in range(3)
    ]
    specs = []
    for tenant in tenants:
        for _ in range(per_tenant):
            base = rng.choice(bases)
            tail = tuple(rng.randrange(4) for _ in range(rng.randrange(0, max_prompt + 1)))
            prompt = (base + tail)[:max_prompt]
            specs.append(Spec(tenant, prompt, rng.randrange(0, max_output + 1)))
    rng.shuffle(specs)
    return specs


def run_backlog(
    config: SchedulerConfig,
    weights: dict[str, float],
    specs: list[Spec],
    rng: random.Random,
    *,
    report: str = "random",
    cache_tokens: int = 10_000,
) -> Trace:
    """Drive one replica until some tenant's queue runs dry.

    ``report``: what the engine says it had cached: "predicted" (the index was right),
    "random" (anything from 0 to the prompt length), or "none" (no count reported).
    """
    sched = Scheduler(config)
    sched.add_replica("r", "m", cache_tokens=cache_tokens)
    for tenant, weight in weights.items():
        sched.set_tenant(tenant, weight)
    jobs: dict[str, Spec] = {}
    for i, spec in enumerate(specs):
        job_id = f"j{i}"
        jobs[job_id] = spec
        sched.arrive(Job(job_id, spec.tenant, "m", spec.prompt, spec.output), 0.0)
    a, b = sorted(weights)[:2]
    served = dict.fromkeys(weights, 0.0)
    trace = Trace()
    running: dict[str, int] = {}  # job id -> tokens still to generate; -1 before first token
    started: set[str] = set()

    def backlogged() -> bool:
        tenants = sched.stats().tenants
        return all(tenants[t].queued > 0 for t in weights)

    def sample() -> None:
        trace.gaps.append(served[a] / weights[a] - served[b] / weights[b])

    now = 0.0
    sample()
    while backlogged():
        for dispatch in sched.admit(now):
            running[dispatch.job_id] = jobs[dispatch.job_id].output
            trace.order.append(jobs[dispatch.job_id].tenant)
        if not running:  # pragma: no cover - admission always finds work while backlogged
            break
        job_id = rng.choice(sorted(running))
        spec = jobs[job_id]
        now += 1.0
        if job_id not in started:
            started.add(job_id)
            cached = _report(report, rng, spec, sched, job_id)
            sched.first_token(job_id, cached, now)
            true_cached = cached if cached is not None else _predicted(sched, job_id)
            # OSDI'24 VTC charges cached prompt tokens as input too; the others charge w_c.
            w_c = config.prompt_weight if config.policy == "vtc" else config.cached_prompt_weight
            uncached = len(spec.prompt) - true_cached
            served[spec.tenant] += uncached * config.prompt_weight + true_cached * w_c
        elif running[job_id] > 0:
            n = rng.randint(1, running[job_id])
            running[job_id] -= n
            sched.tokens(job_id, n, now)
            served[spec.tenant] += n * config.completion_weight
        else:
            del running[job_id]
            sched.finish(job_id, now)
        sample()
    trace.served = served
    return trace


def _predicted(sched: Scheduler, job_id: str) -> int:
    return sched._jobs[job_id].predicted_cached  # the admission-time prediction


def _report(
    report: str, rng: random.Random, spec: Spec, sched: Scheduler, job_id: str
) -> int | None:
    if report == "none":
        return None
    if report == "predicted":
        return _predicted(sched, job_id)
    return rng.randint(0, len(spec.prompt))


@pytest.fixture(scope="session")
def backlog() -> Callable[..., Trace]:
    return run_backlog


@pytest.fixture(scope="session")
def specs() -> Callable[..., list[Spec]]:
    return make_specs


@pytest.fixture(scope="session")
def spec() -> type[Spec]:
    return Spec
