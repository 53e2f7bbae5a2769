"""DLPM: the 2(U + Q_u) bound, weights, refills, locality among credited tenants, no banked
credit."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fairgate.scheduler import Job, Scheduler, SchedulerConfig
from fairgate.scheduler.dlpm import DLPM
from fairgate.scheduler.fairness import Ledger
from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.radix import RadixTree
from fairgate.scheduler.tenants import TenantBook

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _u(specs, config: SchedulerConfig) -> float:
    return max(
        len(s.prompt) * config.prompt_weight + s.output * config.completion_weight for s in specs
    )


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    weights=st.sampled_from([(1, 1), (2, 1), (1, 3), (1.5, 1)]),
    quantum=st.sampled_from([1.0, 7.0, 50.0, 400.0]),
    quantum_jobs=st.sampled_from([0.0, 1.0, 2.0]),
    per_tenant=st.integers(2, 25),
    report=st.sampled_from(["random", "predicted", "none"]),
    cache=st.sampled_from([0, 20, 10_000]),
)
def test_service_gap_of_two_backlogged_tenants_is_within_2_u_plus_q(
    backlog, specs, seed, weights, quantum, quantum_jobs, per_tenant, report, cache
):
    rng = random.Random(seed)
    config = SchedulerConfig(
        policy="dlpm",
        router="round_robin",
        quantum=quantum,
        quantum_jobs=quantum_jobs,
        inflight_initial=1,
        inflight_ceiling=max(64, 1),
        max_queued_per_tenant=1000,
    )
    work = specs(rng, ["a", "b"], per_tenant, max_prompt=40, max_output=30)
    u = _u(work, config)
    # Q_u is the quantum or quantum_jobs typical jobs (a moving average of jobs' work with
    # the prompt uncached and the output expected), whichever is more
    typical = max(len(s.prompt) for s in work) + max(s.output for s in work) * 2.0
    q_u = max(quantum, quantum_jobs * typical)
    trace = backlog(
        config, {"a": weights[0], "b": weights[1]}, work, rng, report=report, cache_tokens=cache
    )
    # deficit/weight of a backlogged tenant stays in (-U/w, Q_u]: the gap spans at most
    # (U/w_a + Q_u) + (U/w_b + Q_u), which is 2(U + Q_u) for equal weights
    assert trace.spread <= u / weights[0] + u / weights[1] + 2 * q_u + 1e-6


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    slots=st.integers(2, 4),
    per_tenant=st.integers(4, 25),
    quantum=st.sampled_from([5.0, 100.0]),
)
def test_with_k_slots_the_bound_is_2_ku_plus_q(backlog, specs, seed, slots, per_tenant, quantum):
    rng = random.Random(seed)
    config = SchedulerConfig(
        policy="dlpm",
        router="round_robin",
        quantum=quantum,
        inflight_initial=slots,
        inflight_ceiling=max(64, slots),
        max_queued_per_tenant=1000,
    )
    work = specs(rng, ["a", "b"], per_tenant, max_prompt=30, max_output=20)
    trace = backlog(config, {"a": 1.0, "b": 1.0}, work, rng, report="predicted")
    q_u = max(quantum, config.quantum_jobs * (30 + 20 * 2.0))  # at most one job's work
    assert trace.spread <= 2 * (slots * _u(work, config) + q_u) + 1e-6


def test_two_to_one_weights_give_two_to_one_service(backlog, spec):
    config = SchedulerConfig(
        policy="dlpm",
        router="round_robin",
        quantum=100.0,
        inflight_initial=1,
        inflight_ceiling=max(64, 1),
        max_queued_per_tenant=1000,
    )
    rng = random.Random(11)
    work = [
        spec(t, tuple(rng.randrange(50) for _ in range(20)), 10)
        for t in ["a", "b"]
        for _ in range(300)
    ]
    trace = backlog(config, {"a": 2.0, "b": 1.0}, work, rng, report="predicted")
    u = _u(work, config)
    a, b = trace.served["a"], trace.served["b"]
    assert abs(a / 2 - b) <= u / 2 + u + 2 * config.quantum
    assert 1.9 < a / b < 2.1


def _record(seq: int, tenant: str, prompt: tuple[int, ...]) -> JobRecord:
    return JobRecord(Job(f"j{seq}", tenant, "m", prompt, 1), seq, "r", 0.0, 0)


def _dlpm(quantum: float = 100.0) -> tuple[DLPM, RadixTree, TenantBook]:
    book = TenantBook()
    tree = RadixTree(1000)
    return DLPM(book, Ledger(), tree, quantum), tree, book


def test_longest_prefix_first_among_tenants_with_credit():
    dlpm, tree, _ = _dlpm()
    tree.insert(("m", ""), (1, 2, 3, 4))
    dlpm.push(_record(1, "a", (9, 9)))
    dlpm.push(_record(2, "a", (1, 2, 3, 9)))
    dlpm.push(_record(3, "b", (1, 2, 9)))
    first = dlpm.pop_next()  # both refilled to 100; the longest match wins
    assert first.job_id == "j2"
    dlpm.charge("a", 150.0)  # a is now in debt: b's shorter match goes first
    assert dlpm.pop_next().job_id == "j3"


def test_refill_gives_enough_rounds_at_once_and_stops_at_the_first_positive():
    dlpm, _, book = _dlpm(quantum=10.0)
    book.set_weight("b", 2.0)
    dlpm.push(_record(1, "a", (1,)))
    dlpm.push(_record(2, "b", (2,)))
    dlpm.charge("a", 95.0)  # needs 10 rounds of 10
    dlpm.charge("b", 95.0)  # needs 5 rounds of 20
    assert dlpm.pop_next().tenant == "b"
    assert dlpm.refills == 5
    assert dlpm.deficit("a") == -45.0
    assert dlpm.deficit("b") == 5.0  # admitted, its job keeps b backlogged
    dlpm.ended("b")  # b's last job ended with credit 5: capped at 0, as in deficit round robin
    assert dlpm.deficit("b") == 0.0


def test_an_idle_tenant_banks_no_credit():
    dlpm, _, _ = _dlpm(quantum=1000.0)
    dlpm.push(_record(1, "a", (1,)))
    dlpm.push(_record(2, "b", (2,)))
    dlpm.charge("b", 5000.0)
    assert dlpm.pop_next().tenant == "a"  # refill: a +1000, b still in debt
    assert dlpm.deficit("a") == 1000.0  # a's job runs: a is still backlogged
    dlpm.ended("a")
    assert dlpm.deficit("a") == 0.0  # a has nothing queued or running: its credit is gone
    dlpm.charge("a", -300.0)  # a refund while idle (engine cached more than predicted)
    assert dlpm.deficit("a") == 0.0
    dlpm.push(_record(3, "a", (3,)))
    assert dlpm.deficit("a") <= 0.0


def test_idle_tenant_returning_alternates_instead_of_bursting():
    sched = Scheduler(
        SchedulerConfig(
            policy="dlpm",
            router="round_robin",
            quantum=25.0,
            inflight_initial=1,
            inflight_ceiling=max(64, 1),
            max_queued_per_tenant=1000,
            anticipation_s=0.0,  # time stands still here: a held slot would never be given up
        )
    )
    sched.add_replica("r", "m")
    now = 0.0

    def serve_one() -> str:
        (dispatch,) = sched.admit(now)
        sched.first_token(dispatch.job_id, 0, now)
        sched.tokens(dispatch.job_id, 10, now)
        sched.finish(dispatch.job_id, now)
        return dispatch.job_id

    sched.arrive(Job("a-first", "a", "m", (5, 5), 10), now)
    for i in range(100):
        sched.arrive(Job(f"b{i}", "b", "m", (i, i + 1), 10), now)
    for _ in range(50):
        serve_one()
    assert sched.stats().tenants["a"].deficit <= 0
    for i in range(20):
        sched.arrive(Job(f"a{i}", "a", "m", (1000 + i, 7), 10), now)
    order = [serve_one()[0] for _ in range(20)]
    assert order.count("a") <= 11
