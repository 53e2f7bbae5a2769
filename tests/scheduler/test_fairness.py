"""Ledgers: backlog tracking, and the cluster scope sharing accounts across replicas."""

from __future__ import annotations

from fairgate.scheduler import Job, Scheduler, SchedulerConfig
from fairgate.scheduler.fairness import Ledger


def test_enter_and_leave_report_backlog_transitions():
    ledger = Ledger()
    assert ledger.enter("a") is True
    assert ledger.enter("a") is False
    assert ledger.enter("b") is True
    assert ledger.backlogged() == ["a", "b"]
    assert ledger.leave("a") is False
    assert ledger.leave("a") is True
    assert not ledger.is_backlogged("a")


def _cluster(policy: str, scope: str) -> Scheduler:
    sched = Scheduler(
        SchedulerConfig(
            policy=policy,
            router="round_robin",
            fairness_scope=scope,
            inflight_initial=1,
            inflight_ceiling=max(64, 1),
            quantum=10.0,
        )
    )
    sched.add_replica("r1", "m")
    sched.add_replica("r2", "m")
    return sched


def test_cluster_scope_counts_service_everywhere_and_stats_count_it_once():
    for scope, expected in (("replica", 24.0), ("cluster", 24.0)):
        sched = _cluster("vtc", scope)
        sched.arrive(Job("a", "t", "m", (1, 2, 3, 4), 1), 0.0)  # r1
        sched.admit(0.0)
        sched.tokens("a", 10, 0.0)
        assert sched.stats().tenants["t"].virtual_counter == expected


def test_cluster_scope_pays_back_a_tenant_on_another_replica():
    """light and heavy both wait on r2 behind a slow job; meanwhile heavy is served a lot on
    r1. When r2 frees up, replica scope sees two tenants with no service *on r2* and takes the
    earlier arrival (heavy's); cluster scope counts heavy's service on r1 and takes light's."""
    on_r1, on_r2 = frozenset({"r2"}), frozenset({"r1"})
    for scope, first in (("replica", "hw"), ("cluster", "l1")):
        sched = _cluster("vtc", scope)
        sched.arrive(Job("x", "other", "m", (1,), 1, exclude=on_r2), 0.0)
        sched.admit(0.0)
        sched.arrive(Job("hw", "heavy", "m", (2,), 1, exclude=on_r2), 0.0)
        sched.arrive(Job("l1", "light", "m", (3,), 1, exclude=on_r2), 0.0)
        sched.arrive(Job("h0", "heavy", "m", (4,), 1, exclude=on_r1), 0.0)
        assert [d.job_id for d in sched.admit(0.0)] == ["h0"]
        sched.tokens("h0", 500, 1.0)
        sched.finish("h0", 1.0)
        sched.finish("x", 2.0)
        assert [d.job_id for d in sched.admit(2.0)] == [first], scope


def test_removing_a_replica_keeps_shared_backlog_counts_right():
    sched = _cluster("dlpm", "cluster")
    for i in range(4):
        sched.arrive(Job(f"j{i}", "t", "m", (i,), 1), 0.0)
    sched.remove_replica("r2", 0.0)
    ledger = sched._replicas["r1"].queue.ledger
    for _ in range(4):
        (dispatch,) = sched.admit(0.0)
        sched.finish(dispatch.job_id, 0.0)
    assert ledger is not None and not ledger.is_backlogged("t")
