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
    """Two replicas R1, R2; Q_w = 100; w_p = 1, w_q = 2. Deficits are written A:(R1, R2).
    Routing charges the expected work: uncached prompt + expected output * w_q (a tenant with no
    finished job is expected to use its max_tokens, here 1: +2 per job).

    0. W sends w0 = P (40 tokens, max_tokens 5). No credit anywhere: W is refilled to
       (100, 100); nothing matches, R1 (first of equals). Charged 40 + 5 * 2: W:(50, 100). It
       runs, streams its 5 tokens and finishes: expected = actual, nothing to settle.
    1. A sends a1 = P + 20 new tokens. A is refilled to (100, 100). Longest match is R1 (40 vs
       0), where A has credit: R1. Charged 20 + 2: A:(78, 100).
    2. A sends a2 = P + 90. R1 again (longest, credit 78). Charged 92: A:(-14, 100).
    3. A sends a3 = P + 10. R1 holds the prefix but A has no credit there; it is placed where
       it has credit: R2 (match 0). Charged 50 + 2: A:(-14, 48).
    4. B sends b1 = P + 10. B is refilled to (100, 100) and goes to R1 for locality, although
       R1 holds more queued work (126 vs 52): less than Q_w = 100 more is no overload.
       Charged 12: B:(88, 100).
    5. A sends a4 = P + 60. R1 has the prefix, A has no credit there: R2. Charged 102:
       A:(-14, -54).
    6. A sends a5 = P + 5. A has credit nowhere: refill. One round of 100 turns R1 positive,
       so one round is given to both: A:(86, 46). Longest match with credit: R1. Charged 7:
       A:(79, 46).

    So the heavy tenant A follows its prefix until it has used its share of R1, then spills to
    R2, while B keeps its locality on R1.
    """
    sched = Scheduler(
        SchedulerConfig(
            policy="dlpm",
            router="d2lpm",
            replica_quantum=100.0,
            replica_quantum_jobs=0.0,  # Q_w alone, as in the paper
            prompt_weight=1.0,
            completion_weight=2.0,
            inflight_initial=8,
            inflight_ceiling=max(64, 8),
        )
    )
    sched.add_replica("R1", "m")
    sched.add_replica("R2", "m")

    def credit(tenant: str) -> tuple[float, float]:
        deficits = sched.stats().tenants[tenant].replica_deficits
        return deficits["R1"], deficits["R2"]

    assert sched.arrive(Job("w0", "W", "m", P, 5), 0.0) == "R1"
    assert credit("W") == (50, 100)
    assert [d.job_id for d in sched.admit(0.0)] == ["w0"]
    sched.first_token("w0", 0, 0.1)
    sched.tokens("w0", 5, 0.2)
    sched.finish("w0", 0.3)
    assert credit("W") == (50, 100)
    sched.set_inflight_limit("R1", 1)  # from here on nothing is admitted: the caches stay put
    sched.set_inflight_limit("R2", 1)

    steps = [
        ("a1", "A", P + tail(20, 100), "R1", (78, 100)),
        ("a2", "A", P + tail(90, 200), "R1", (-14, 100)),
        ("a3", "A", P + tail(10, 300), "R2", (-14, 48)),
        ("b1", "B", P + tail(10, 400), "R1", (88, 100)),
        ("a4", "A", P + tail(60, 500), "R2", (-14, -54)),
        ("a5", "A", P + tail(5, 600), "R1", (79, 46)),
    ]
    for job_id, tenant, prompt, replica, deficits in steps:
        assert sched.arrive(Job(job_id, tenant, "m", prompt, 1), 1.0) == replica, job_id
        assert credit(tenant) == deficits, job_id
    reasons = sched.stats().route_reasons
    assert reasons == {"place": 3, "locality": 4}, reasons  # w0, a3, a4 matched nowhere


@dataclass
class FakeReplica:
    replica_id: str
    queued: int = 0
    hit: int = 0
    ahead: float = 0.0
    present: frozenset[str] = frozenset()
    room: int = 1_000

    def load(self) -> int:
        return self.queued

    def work(self) -> float:
        return 100.0 * self.queued

    def cache_room(self) -> int:
        return self.room

    def prefix_match(self, job: Job) -> int:
        return self.hit

    def cache_size(self) -> int:
        return 0

    def work_ahead(self, tenant: str, job_work: float) -> float:
        return self.ahead

    def tenants(self) -> set[str]:
        return set(self.present)


def test_too_uneven_queues_fall_back_to_least_load():
    router = D2LPM(
        SchedulerConfig(balance_abs_threshold=800, balance_rel_threshold=1.5), TenantBook()
    )
    job = Job("j", "t", "m", tuple(range(50)), 1)
    reps = [FakeReplica("hot", 20, hit=50), FakeReplica("cold", 2)]
    assert router.route(job, reps).replica_id == "cold"  # 2,000 vs 200 queued work
    assert router.reasons == {"guard": 1}
    near = [FakeReplica("hot", 9, hit=50), FakeReplica("cold", 2)]  # 900 vs 200: no overload
    assert router.route(job, near).replica_id == "hot"


def test_weights_scale_the_refill():
    book = TenantBook()
    book.set_weight("gold", 3.0)
    router = D2LPM(SchedulerConfig(replica_quantum=10.0, replica_quantum_jobs=0.0), book)
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


def test_a_short_prefix_does_not_pull_a_job_behind_other_tenants_queues():
    router = D2LPM(SchedulerConfig(), TenantBook())
    job = Job("j", "light", "m", tuple(range(50)), 16)  # expected work: 50 - hit + 32
    behind = FakeReplica("behind", hit=48, ahead=200.0)  # the other light tenant queues here
    free = FakeReplica("free", hit=40)
    assert router.route(job, [behind, free]).replica_id == "free"  # 0 + 42 < 200 + 34
    assert router.reasons == {"spill": 1}
    alike = [FakeReplica("behind", hit=48, ahead=5.0), FakeReplica("free", hit=40, ahead=5.0)]
    assert router.route(job, alike).replica_id == "behind"  # queues alike: locality


def test_the_refill_covers_a_few_of_the_tenants_typical_jobs():
    """Q_w = 4096 is less than one question about a 5k-token document: the refill grows to
    replica_quantum_jobs such jobs, so a tenant's next job can follow its cached document."""
    book = TenantBook()
    router = D2LPM(SchedulerConfig(replica_quantum=4096.0), book)
    job = Job("j", "t", "m", tuple(range(5000)), 50)
    book.observe_job("t", 5000 + 50 * 2, 0.2)  # what Scheduler does before routing
    router.route(job, [FakeReplica("a"), FakeReplica("b")])
    assert router.deficits("t") == {"a": 4 * 5100.0, "b": 4 * 5100.0}


def test_huge_prompts_do_not_buy_a_bigger_quantum():
    """The floor follows the median tenant's typical job, not the tenant's own: a tenant
    sending 20k-token prompts (misbehaving S2) is refilled like the others."""
    book = TenantBook()
    router = D2LPM(SchedulerConfig(replica_quantum=100.0), book)
    reps = [FakeReplica("a"), FakeReplica("b")]
    for t in ("x", "y"):
        book.observe_job(t, 1000.0, 0.2)
        router.route(Job(f"{t}0", t, "m", tuple(range(1000)), 0), reps)
    book.observe_job("huge", 20_000.0, 0.2)
    router.route(Job("big", "huge", "m", tuple(range(20_000)), 0), reps)
    assert router.deficits("huge") == {"a": 4 * 1000.0, "b": 4 * 1000.0}


def test_a_new_prefix_goes_beside_the_tenant_that_asks_most():
    """The flood asks 40 jobs, the other light tenant 4: a fair local order takes the
    newcomer's share from the flood, not from the light tenant, so it is placed beside the
    flood although that replica holds more work (measured: bench.fairness' flood)."""
    book = TenantBook()
    book.account("flood").queued = 40
    book.account("light-a").queued = 4
    router = D2LPM(SchedulerConfig(), book)
    beside_light = FakeReplica("a", queued=4, present=frozenset({"light-a"}))
    beside_flood = FakeReplica("b", queued=40, present=frozenset({"flood"}))
    job = Job("j", "light-b", "m", tuple(range(50)), 16)
    assert router.route(job, [beside_light, beside_flood]).replica_id == "b"
    assert router.reasons == {"place": 1}
    fresh = D2LPM(SchedulerConfig(), book)  # an empty replica is better still
    empty = FakeReplica("c")
    assert fresh.route(job, [beside_light, beside_flood, empty]).replica_id == "c"


def test_a_kept_tenant_is_refilled_where_it_is_kept_so_its_debt_stays_bounded():
    """Its prefix is cached on "a" only and "b" has no room: every job stays on "a". The
    credit it holds on "b" must not keep it from being refilled on "a" (it was: its debt
    there grew by every job, and once "b" had room it would have avoided "a" for as long)."""
    router = D2LPM(SchedulerConfig(replica_quantum=100.0, replica_quantum_jobs=0.0), TenantBook())
    cached = FakeReplica("a", hit=40, room=0)
    full = FakeReplica("b", room=0)
    router.route(Job("j0", "t", "m", tuple(range(50)), 0), [FakeReplica("a"), full])
    for i in range(1, 200):
        job = Job(f"j{i}", "t", "m", tuple(range(50)), 0)
        assert router.route(job, [cached, full]).replica_id == "a"
        router.charge("t", "a", 10.0)  # what the scheduler charges: the uncached 10 tokens
        assert -10 <= router.deficits("t")["a"] <= 100, router.deficits("t")
    assert router.reasons["kept"] > 0


def _run_one(sched: Scheduler, job: Job) -> str:
    replica = sched.arrive(job, 0.0)
    for d in sched.admit(0.0):
        sched.first_token(d.job_id, 0, 0.0)
        sched.tokens(d.job_id, job.max_tokens, 0.0)
        sched.finish(d.job_id, 0.0)
    return replica


def test_prompts_nobody_reused_leave_room_to_spill_into():
    """Replica r1's index is full of one 900-token prompt that no other job shared
    (misbehaving S2's unique tails). It is room: the tenant out of credit beside its cached
    document on r0 goes there instead of being kept on r0 (it was: only free space counted,
    and t0 held two replicas where no one else queued, min/fair 0.65)."""
    sched = Scheduler(
        SchedulerConfig(
            replica_quantum=50.0,
            replica_quantum_jobs=0.0,
            cache_tokens_per_replica=1000,
            inflight_initial=1,
        )
    )
    sched.add_replica("r0", "m")
    sched.add_replica("r1", "m")
    doc = tuple(range(600))
    assert _run_one(sched, Job("a0", "a", "m", (*doc, 1), 5)) == "r0"
    big = Job("b0", "big", "m", tuple(range(5000, 5900)), 5, exclude=frozenset({"r0"}))
    assert _run_one(sched, big) == "r1"
    r1 = sched._replicas["r1"]
    assert (r1.tree.tokens, r1.tree.cold_tokens, r1.cache_room()) == (900, 900, 1000)
    assert sched.arrive(Job("a1", "a", "m", (*doc, 11), 5), 1.0) == "r1"
    assert "kept" not in sched.stats().route_reasons
