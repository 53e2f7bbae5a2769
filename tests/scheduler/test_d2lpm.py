"""D²LPM: a hand-worked example, checked step by step, and its load-balance guard."""

from __future__ import annotations

from dataclasses import dataclass

from fairgate.scheduler import Job, Scheduler, SchedulerConfig
from fairgate.scheduler.d2lpm import D2LPM
from fairgate.scheduler.tenants import TenantBook

P = tuple(range(1, 41))  # a 40-token shared prefix (say, a system prompt)


def tail(n: int, start: int) -> tuple[int, ...]:
    return tuple(range(start, start + n))


def test_hand_worked_example():
    """Two replicas R1, R2; Q_w = 100; w_p = 1. Deficits are written A:(R1, R2).

    0. W sends w0 = P (40 tokens). No replica caches anything; W has no credit anywhere, so W
       is refilled to (100, 100). Every replica ties on the longest match (0) and both have
       credit: shortest queue, tie to the first: R1. W is charged 40 uncached tokens on R1:
       W:(60, 100). w0 is admitted; R1 now caches P. w0 streams 5 tokens (x w_q = 2): W:(50, 100).
    1. A sends a1 = P + 20 new tokens. A has no credit: refilled to (100, 100). Longest match
       is R1 (40 vs 0), where A has credit: R1. Charged 60 - 40 = 20: A:(80, 100).
    2. A sends a2 = P + 90. R1 again (longest, credit 80). Charged 90: A:(-10, 100).
    3. A sends a3 = P + 10. R1 holds the prefix but A has no credit there; the fallback is a
       replica where A has credit: R2 (match 0). Charged all 50 tokens: A:(-10, 50).
    4. B sends b1 = P + 10. B is refilled to (100, 100) and goes to R1 for locality, although
       R1's queue (a1, a2) is longer than R2's (a3): a difference of 1 is no imbalance.
       Charged 10: B:(90, 100).
    5. A sends a4 = P + 60. R1 has the prefix, A has no credit there: R2. Charged 100:
       A:(-10, -50).
    6. A sends a5 = P + 5. A has credit nowhere: refill. One round of 100 turns R1 positive
       (-10 -> 90) so one round is given to both: A:(90, 50). Longest match with credit: R1.
       Charged 5: A:(85, 50).

    So the heavy tenant A follows its prefix until it has used its share of R1, then spills to
    R2, while B keeps its locality on R1.
    """
    sched = Scheduler(
        SchedulerConfig(
            policy="dlpm",
            router="d2lpm",
            replica_quantum=100.0,
            prompt_weight=1.0,
            completion_weight=2.0,
            max_inflight_per_replica=8,
        )
    )
    sched.add_replica("R1", "m")
    sched.add_replica("R2", "m")

    def credit(tenant: str) -> tuple[float, float]:
        deficits = sched.stats().tenants[tenant].replica_deficits
        return deficits["R1"], deficits["R2"]

    assert sched.arrive(Job("w0", "W", "m", P, 5), 0.0) == "R1"
    assert credit("W") == (60, 100)
    assert [d.job_id for d in sched.admit(0.0)] == ["w0"]
    sched.first_token("w0", 0, 0.1)
    sched.tokens("w0", 5, 0.2)
    sched.finish("w0", 0.3)
    assert credit("W") == (50, 100)
    sched.set_inflight_limit("R1", 1)  # from here on nothing is admitted: the caches stay put
    sched.set_inflight_limit("R2", 1)

    steps = [
        ("a1", "A", P + tail(20, 100), "R1", (80, 100)),
        ("a2", "A", P + tail(90, 200), "R1", (-10, 100)),
        ("a3", "A", P + tail(10, 300), "R2", (-10, 50)),
        ("b1", "B", P + tail(10, 400), "R1", (90, 100)),
        ("a4", "A", P + tail(60, 500), "R2", (-10, -50)),
        ("a5", "A", P + tail(5, 600), "R1", (85, 50)),
    ]
    for job_id, tenant, prompt, replica, deficits in steps:
        assert sched.arrive(Job(job_id, tenant, "m", prompt, 1), 1.0) == replica, job_id
        assert credit(tenant) == deficits, job_id


@dataclass
class FakeReplica:
    replica_id: str
    queued: int = 0
    hit: int = 0

    def load(self) -> int:
        return self.queued

    def prefix_match(self, job: Job) -> int:
        return self.hit

    def cache_size(self) -> int:
        return 0


def test_too_uneven_queues_fall_back_to_least_load():
    router = D2LPM(
        SchedulerConfig(balance_abs_threshold=8, balance_rel_threshold=1.5), TenantBook()
    )
    job = Job("j", "t", "m", tuple(range(50)), 1)
    reps = [FakeReplica("hot", 20, hit=50), FakeReplica("cold", 2)]
    assert router.route(job, reps).replica_id == "cold"


def test_weights_scale_the_refill():
    book = TenantBook()
    book.set_weight("gold", 3.0)
    router = D2LPM(SchedulerConfig(replica_quantum=10.0), book)
    job = Job("j", "gold", "m", (1,), 1)
    router.route(job, [FakeReplica("a"), FakeReplica("b")])
    assert router.deficits("gold") == {"a": 30.0, "b": 30.0}


def test_credit_recovers_after_refunds_and_forgets_removed_replicas():
    router = D2LPM(SchedulerConfig(replica_quantum=10.0), TenantBook())
    router.charge("t", "a", 25.0)
    router.charge("t", "a", -5.0)
    assert router.deficits("t") == {"a": -20.0}
    router.forget("a")
    assert router.deficits("t") == {}
