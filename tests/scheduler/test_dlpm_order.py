"""DLPM's order: the deficit rule decides, locality breaks ties within ``locality_slack``;
the expected output is charged at admission and settled exactly at the end."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fairgate.scheduler import Job, Scheduler, SchedulerConfig
from fairgate.scheduler.dlpm import DLPM
from fairgate.scheduler.fairness import Ledger
from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.radix import RadixTree
from fairgate.scheduler.tenants import TenantBook

SETTINGS = settings(max_examples=200, deadline=None, database=None)


def _record(seq: int, tenant: str, prompt: tuple[int, ...]) -> JobRecord:
    return JobRecord(Job(f"j{seq}", tenant, "m", prompt, 1), seq, "r", 0.0, 0)


def test_a_tenant_ahead_in_credit_goes_before_a_warm_flood():
    book, tree = TenantBook(), RadixTree(1000)
    dlpm = DLPM(book, Ledger(), tree, quantum=1024.0, slack=0.0)
    tree.insert(("m", ""), tuple(range(40)))  # the flood's prompt is cached
    for i in range(5):
        dlpm.push(_record(i, "flood", (*range(40), 100 + i)))
    dlpm.push(_record(10, "light", (7, 7)))
    assert dlpm.pop_next().tenant == "flood"  # equal credit: the longer match
    dlpm.charge("flood", 50.0)
    assert dlpm.pop_next().tenant == "light"  # light is 50 ahead: credit decides


def test_slack_of_one_quantum_is_the_papers_rule():
    book, tree = TenantBook(), RadixTree(1000)
    dlpm = DLPM(book, Ledger(), tree, quantum=1024.0)  # slack defaults to Q_u
    tree.insert(("m", ""), tuple(range(40)))
    for i in range(5):
        dlpm.push(_record(i, "flood", (*range(40), 100 + i)))
    dlpm.push(_record(10, "light", (7, 7)))
    dlpm.pop_next()
    dlpm.charge("flood", 900.0)
    assert dlpm.pop_next().tenant == "flood"  # still credited: the longer match wins


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    slack=st.sampled_from([0.0, 10.0, 100.0, 1000.0]),
    quantum=st.sampled_from([20.0, 100.0, 1000.0]),
    steps=st.integers(5, 80),
)
def test_the_admitted_tenant_is_within_slack_of_the_most_credit(seed, slack, quantum, steps):
    rng = random.Random(seed)
    book, tree = TenantBook(), RadixTree(200)
    book.set_weight("c", 2.0)
    dlpm = DLPM(book, Ledger(), tree, quantum=quantum, slack=slack)
    seq = 0
    for _ in range(steps):
        action = rng.random()
        if action < 0.5:
            seq += 1
            prompt = tuple(rng.randrange(3) for _ in range(rng.randrange(1, 12)))
            dlpm.push(_record(seq, rng.choice("abc"), prompt))
        elif action < 0.7 and len(dlpm):
            tenant = rng.choice("abc")
            dlpm.charge(tenant, rng.uniform(-50, 200))
        elif len(dlpm):
            # the state pop_next decides from, after the refill it may do
            record = dlpm.pop_next()
            assert record is not None
            tree.insert(("m", ""), record.job.prompt)
            waiting = [t for t in "abc" if dlpm._queue.has_tenant(t)] + [record.tenant]
            credit = {t: dlpm.deficit(t) / book.weight(t) for t in waiting}
            chosen = credit[record.tenant] if dlpm._queue.has_tenant(record.tenant) else None
            others = [credit[t] for t in waiting if t != record.tenant]
            if chosen is not None and others:
                # the chosen tenant kept credit (still queued): none was ahead by > slack
                assert chosen >= max(others) - slack - 1e-9


def _one_job(sched: Scheduler, job_id: str, generated: int, cached: int) -> None:
    sched.arrive(Job(job_id, "a", "m", tuple(range(50)), 40), 0.0)
    (dispatch,) = sched.admit(0.0)
    for _ in range(generated):
        sched.tokens(dispatch.job_id, 1, 0.0)
    sched.first_token(dispatch.job_id, cached, 0.0)
    sched.finish(dispatch.job_id, 0.0)


@SETTINGS
@given(outputs=st.lists(st.integers(0, 40), min_size=2, max_size=12), cached=st.integers(0, 49))
def test_charging_ahead_settles_to_the_real_service(outputs, cached):
    """Whatever the estimate, DLPM's account ends charged exactly what each job used (the
    first job streams its charge: no output has been measured yet)."""
    config = SchedulerConfig(policy="dlpm", router="round_robin")
    sched = Scheduler(config)
    sched.add_replica("r", "m")
    policy = sched._replicas["r"].queue
    assert policy.charges_ahead
    charged: list[float] = []
    real_charge = policy.charge
    policy.charge = lambda tenant, amount: (charged.append(amount), real_charge(tenant, amount))
    for i, generated in enumerate(outputs):
        _one_job(sched, f"j{i}", generated, cached)
    expected = sum(
        (50 - min(cached, 49)) * config.prompt_weight + g * config.completion_weight
        for g in outputs
    )
    assert abs(sum(charged) - expected) < 1e-6
    assert abs(sched.stats().tenants["a"].served_tokens - expected) < 1e-6
