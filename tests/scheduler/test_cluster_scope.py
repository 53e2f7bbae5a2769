"""Cluster-scope fairness accounts: a refill on one replica cannot give tenants queued
elsewhere credit without bound (the bug of 2026-12-01); routing charges expected work and
settles it at the end."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairgate.scheduler import Job, Scheduler, SchedulerConfig

QUANTUM = 50.0
TENANTS = ("a", "b", "c")
ops = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.sampled_from(TENANTS), st.integers(1, 60)),
        st.tuples(st.just("admit"), st.just(""), st.just(0)),
        st.tuples(st.just("finish"), st.just(""), st.integers(0, 40)),
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=200, deadline=None, database=None)
@given(ops=ops, weights=st.sampled_from([(1, 1, 1), (1, 2, 1), (3, 1, 0.5)]))
def test_no_tenant_ever_holds_more_than_two_quanta_of_credit(ops, weights):
    """A refill raises no one past the best credited tenant queued where it happens + one
    quantum (per unit of weight); that tenant holds at most one (the refill stops at the first
    positive)."""
    sched = Scheduler(
        SchedulerConfig(
            policy="dlpm",
            router="round_robin",
            fairness_scope="cluster",
            quantum=QUANTUM,
            quantum_jobs=0,  # Q_u is QUANTUM, not a typical job when that is more
            inflight_initial=1,
            max_queued_per_tenant=1000,
        )
    )
    for name, weight in zip(TENANTS, weights, strict=True):
        sched.set_tenant(name, weight)
    for r in ("r0", "r1", "r2"):
        sched.add_replica(r, "m")
    running: list[str] = []
    n = 0
    for op, tenant, size in ops:
        if op == "arrive":
            n += 1
            sched.arrive(Job(f"j{n}", tenant, "m", tuple(range(n, n + size)), 4), 0.0)
        elif op == "admit":
            running += [d.job_id for d in sched.admit(0.0)]
        elif running:
            job = running.pop(0)
            sched.first_token(job, 0, 0.0)
            sched.tokens(job, size, 0.0)
            sched.finish(job, 0.0)
        for name, weight in zip(TENANTS, weights, strict=True):
            credit = sched.stats().tenants.get(name)
            if credit is not None:
                assert credit.deficit <= 2 * QUANTUM * weight + 1e-9, (name, credit.deficit)


def test_routing_charges_expected_output_and_settles_at_finish():
    sched = Scheduler(SchedulerConfig(replica_quantum=1000.0, completion_weight=2.0))
    sched.add_replica("r", "m")
    prompt = tuple(range(30))
    sched.arrive(Job("j1", "t", "m", prompt, 100), 0.0)  # no history: max_tokens expected
    assert sched.stats().tenants["t"].replica_deficits["r"] == 1000 - 30 - 200
    sched.admit(0.0)
    sched.first_token("j1", 0, 0.0)
    sched.tokens("j1", 10, 0.0)
    sched.finish("j1", 0.0)  # made 10 of the 100 expected: 180 back
    assert sched.stats().tenants["t"].replica_deficits["r"] == 1000 - 30 - 20
    sched.arrive(Job("j2", "t", "m", tuple(range(100, 130)), 100), 0.0)
    # now the tenant's average (10) is expected, not its max_tokens
    assert sched.stats().tenants["t"].replica_deficits["r"] == 1000 - 50 - 30 - 20


def test_cached_prompt_weight_is_charged_between_zero_and_w_p():
    for w_c in (0.0, 0.5, 1.0):
        sched = Scheduler(SchedulerConfig(policy="dlpm", cached_prompt_weight=w_c))
        sched.add_replica("r", "m")
        prompt = tuple(range(33))
        for i in range(2):
            sched.arrive(Job(f"j{i}", "t", "m", prompt, 0), 0.0)
            sched.admit(0.0)
            sched.first_token(f"j{i}", 32 if i else 0, 0.0)
            sched.finish(f"j{i}", 0.0)
        assert sched.stats().tenants["t"].served_tokens == 33 + 1 + 32 * w_c


@given(reports=st.lists(st.integers(0, 40), min_size=1, max_size=20))
@settings(max_examples=100, deadline=None, database=None)
def test_outstanding_work_returns_to_zero_whatever_the_engine_reports(reports):
    sched = Scheduler(SchedulerConfig(inflight_initial=64))
    sched.add_replica("r", "m")
    prompt = tuple(range(40))
    for i, _ in enumerate(reports):
        sched.arrive(Job(f"j{i}", "t", "m", (*prompt, 1000 + i), 8), 0.0)
    sched.admit(0.0)
    assert sched._replicas["r"].outstanding > 0
    for i, cached in enumerate(reports):
        sched.first_token(f"j{i}", cached, 0.0)
        sched.tokens(f"j{i}", 3, 0.0)
        sched.finish(f"j{i}", 0.0)
    assert sched._replicas["r"].outstanding == pytest.approx(0.0, abs=1e-6)
