"""The baseline routers, ranking plain test doubles (router.Candidate)."""

from __future__ import annotations

from dataclasses import dataclass

from fairgate.scheduler import Job, SchedulerConfig
from fairgate.scheduler.router import imbalanced, least_loaded
from fairgate.scheduler.routers import LeastLoad, LongestPrefix, RoundRobin
from fairgate.scheduler.tenants import TenantBook


@dataclass
class FakeReplica:
    """A router.Candidate with scripted load, match and cache size."""

    replica_id: str
    queued: int = 0
    hit: int = 0
    cached: int = 0

    def load(self) -> int:
        return self.queued

    def prefix_match(self, job: Job) -> int:
        return min(self.hit, len(job.prompt))

    def cache_size(self) -> int:
        return self.cached


JOB = Job("j", "t", "m", tuple(range(100)), 10)


def test_round_robin_cycles_per_model():
    router = RoundRobin(SchedulerConfig(), TenantBook())
    reps = [FakeReplica("a"), FakeReplica("b"), FakeReplica("c")]
    other = Job("k", "t", "other", (1,), 1)
    picks = [router.route(JOB, reps).replica_id for _ in range(4)]
    assert picks == ["a", "b", "c", "a"]
    assert router.route(other, reps).replica_id == "a"


def test_least_load_and_its_tie_break():
    router = LeastLoad(SchedulerConfig(), TenantBook())
    assert (
        router.route(
            JOB, [FakeReplica("a", 3), FakeReplica("b", 1), FakeReplica("c", 1)]
        ).replica_id
        == "b"
    )
    assert least_loaded([FakeReplica("x", 2), FakeReplica("y", 2)]).replica_id == "x"


def test_imbalance_needs_both_the_absolute_and_the_relative_gap():
    assert imbalanced([FakeReplica("a", 100), FakeReplica("b", 10)], 64, 1.5)
    assert not imbalanced([FakeReplica("a", 100), FakeReplica("b", 50)], 64, 1.5)  # < 64 apart
    assert not imbalanced([FakeReplica("a", 200), FakeReplica("b", 135)], 64, 1.5)  # < 1.5x


def test_lpm_follows_the_longest_match_above_the_cache_threshold():
    router = LongestPrefix(SchedulerConfig(), TenantBook())
    reps = [FakeReplica("a", 5, hit=10), FakeReplica("b", 9, hit=80), FakeReplica("c", 1, hit=80)]
    assert router.route(JOB, reps).replica_id == "c"  # longest match, then least loaded


def test_lpm_sends_unfamiliar_prompts_to_the_emptiest_cache():
    router = LongestPrefix(SchedulerConfig(cache_threshold=0.3), TenantBook())
    reps = [FakeReplica("a", 0, hit=20, cached=900), FakeReplica("b", 7, hit=0, cached=100)]
    assert router.route(JOB, reps).replica_id == "b"  # 20% match is below the threshold


def test_lpm_balances_load_when_queues_are_too_uneven():
    router = LongestPrefix(
        SchedulerConfig(balance_abs_threshold=4, balance_rel_threshold=1.5), TenantBook()
    )
    reps = [FakeReplica("hot", 10, hit=100), FakeReplica("idle", 1)]
    assert router.route(JOB, reps).replica_id == "idle"
