"""Anticipation: a slot freed by a tenant that would be served next is held briefly for its
next job, since a closed-loop client sends one a few milliseconds after each answer."""

from __future__ import annotations

from types import SimpleNamespace

from fairgate.scheduler import Job, Scheduler, SchedulerConfig
from fairgate.scheduler.anticipation import Anticipation

HOLD = 0.03


def make(policy: str = "dlpm", anticipation_s: float = HOLD) -> Scheduler:
    sched = Scheduler(
        SchedulerConfig(
            policy=policy,
            router="round_robin",
            inflight_initial=1,
            quantum=100.0,
            quantum_jobs=0,
            anticipation_s=anticipation_s,
        )
    )
    sched.add_replica("r", "m")
    return sched


def job(job_id: str, tenant: str) -> Job:
    return Job(job_id, tenant, "m", (1, 2, 3, 4), 8)


def run(sched: Scheduler, job_id: str, now: float, tokens: int = 8) -> None:
    sched.first_token(job_id, 0, now)
    sched.tokens(job_id, tokens, now)
    sched.finish(job_id, now)


def flood_in_debt(sched: Scheduler) -> None:
    """The flood queues two jobs and spends far more than the light tenant."""
    sched.arrive(job("f1", "flood"), 0.0)
    sched.arrive(job("f2", "flood"), 0.0)
    sched.arrive(job("l1", "light"), 0.0)
    assert [d.job_id for d in sched.admit(0.0)] == ["f1"]
    run(sched, "f1", 0.1, tokens=200)  # the flood is now deeply in debt
    assert [d.job_id for d in sched.admit(0.1)] == ["l1"]


def test_the_slot_waits_for_the_next_job_of_the_tenant_ahead() -> None:
    sched = make()
    flood_in_debt(sched)
    run(sched, "l1", 0.2)
    assert sched.admit(0.2) == []  # held for light, whose credit is ahead of the flood's
    assert sched.next_hold_expiry(0.2) == 0.2 + HOLD
    sched.arrive(job("l2", "light"), 0.21)  # its next request, 10 ms later
    assert [d.job_id for d in sched.admit(0.21)] == ["l2"]
    assert sched.next_hold_expiry(0.21) is None


def test_a_hold_not_taken_in_time_goes_to_whoever_is_queued() -> None:
    sched = make()
    flood_in_debt(sched)
    run(sched, "l1", 0.2)
    assert sched.admit(0.2 + HOLD / 2) == []
    assert [d.job_id for d in sched.admit(0.2 + HOLD)] == ["f2"]
    assert sched.next_hold_expiry(0.2 + HOLD) is None


def test_no_slot_is_held_for_a_tenant_behind() -> None:
    sched = make()
    sched.arrive(job("l1", "light"), 0.0)
    sched.arrive(job("f1", "flood"), 0.0)
    sched.arrive(job("f2", "flood"), 0.0)
    assert [d.job_id for d in sched.admit(0.0)] == ["l1"]
    run(sched, "l1", 0.1, tokens=200)  # light spent more than the flood: not ahead
    assert [d.job_id for d in sched.admit(0.1)] == ["f1"]


def test_no_slot_is_held_when_anticipation_is_off() -> None:
    sched = make(anticipation_s=0.0)
    flood_in_debt(sched)
    run(sched, "l1", 0.2)
    assert [d.job_id for d in sched.admit(0.2)] == ["f2"]


def test_fcfs_holds_no_slot_it_orders_no_tenants() -> None:
    sched = make("fcfs")
    sched.arrive(job("l1", "light"), 0.0)
    sched.arrive(job("f1", "flood"), 0.0)
    assert [d.job_id for d in sched.admit(0.0)] == ["l1"]
    run(sched, "l1", 0.1)
    assert [d.job_id for d in sched.admit(0.1)] == ["f1"]


def test_a_running_job_keeps_its_tenant_backlogged_until_it_ends() -> None:
    """Credit is kept while the tenant's admitted job runs (no refill missed for a queue that
    is empty for a moment) and dropped once nothing of it is queued or running."""
    sched = make()
    sched.arrive(job("l1", "light"), 0.0)
    sched.arrive(job("f1", "flood"), 0.0)
    assert [d.job_id for d in sched.admit(0.0)] == ["l1"]
    light = sched.stats().tenants["light"]
    assert light.queued == 0 and light.deficit > 0
    run(sched, "l1", 0.1, tokens=0)
    assert sched.stats().tenants["light"].deficit <= 0


class Standings:
    """A policy's view as Anticipation reads it: light stands ahead of the queued flood."""

    def standing(self, tenant: str) -> float:
        return {"light": 10.0, "flood": -10.0}[tenant]

    def best_standing(self, but: str) -> float:
        return -10.0


def test_a_tenant_whose_next_job_does_not_come_in_time_stops_reserving() -> None:
    """Holds cost a slot when the client thinks before its next request: after a few watches
    that expire, its slots go on at once; watches its jobs meet bring the holds back."""
    anticipation = Anticipation(HOLD)
    replica = SimpleNamespace(holds=[], healthy=True, queue=Standings())
    now = 0.0
    reserved = []
    for _ in range(5):  # the next job comes 1 s later, long after the watch
        anticipation.ended(replica, "light", now)
        reserved.append(anticipation.held(replica))
        anticipation.expire(replica, now + HOLD)
        now += 1.0
    assert reserved == [1, 1, 1, 1, 0]
    for _ in range(3):  # it starts coming back within a few milliseconds
        anticipation.ended(replica, "light", now)
        anticipation.arrived(replica, "light")
        now += 1.0
    anticipation.ended(replica, "light", now)
    assert anticipation.held(replica) == 1
