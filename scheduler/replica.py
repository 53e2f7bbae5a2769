"""One replica as the scheduler sees it: its prefix index, its local queue, its slots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fairgate.scheduler.job import Job

if TYPE_CHECKING:
    from fairgate.scheduler.anticipation import Hold
from fairgate.scheduler.policy import LocalPolicy
from fairgate.scheduler.radix import RadixTree


@dataclass(slots=True, eq=False)
class Replica:
    replica_id: str
    model: str
    tree: RadixTree
    queue: LocalPolicy
    inflight_limit: int
    healthy: bool = True
    inflight: dict[str, str] = field(default_factory=dict)  # job id -> tenant, admission order
    prompt_tokens: int = 0  # prompt tokens admitted here
    predicted_hit_tokens: int = 0  # of those, cached according to the index at admission
    reported_prompt_tokens: int = 0  # prompt tokens of jobs whose engine reported a count
    cached_tokens: int = 0  # of those, cached according to the engine
    outstanding: float = 0.0  # expected work (weighted tokens) of queued + running jobs
    queued_work: dict[str, float] = field(default_factory=dict)  # tenant -> expected, queued
    holds: list[Hold] = field(default_factory=list)  # anticipation's watches

    def load(self) -> int:
        return len(self.queue) + len(self.inflight)

    def work(self) -> float:
        return self.outstanding

    def work_ahead(self, tenant: str, job_work: float) -> float:
        """Queued work a new job of ``tenant`` would wait behind under a fair local queue:
        its tenant's own queued work, and from every other tenant queued here about as much
        as the job itself (a fair queue interleaves backlogged tenants; it does not serve
        anyone's whole backlog first)."""
        return sum(
            work if t == tenant else min(work, job_work) for t, work in self.queued_work.items()
        )

    def tenants(self) -> set[str]:
        return set(self.queued_work) | set(self.inflight.values())

    def add_queued(self, tenant: str, work: float) -> None:
        left = self.queued_work.get(tenant, 0.0) + work
        if left > 1e-9:
            self.queued_work[tenant] = left
        else:
            self.queued_work.pop(tenant, None)

    def cache_room(self) -> int:
        """Tokens the prefix index can take before it evicts a prefix that more than one job
        has used: free space plus the cold tokens (``RadixTree.cold_tokens``). Counting only
        free space, a tenant sending 20k-token prompts with unique tails filled two replicas'
        indexes, and every other tenant was "kept" off them while it queued elsewhere
        (misbehaving S2 overloaded: min/fair 0.65, with cold tokens counted 0.79)."""
        return max(0, self.tree.budget - self.tree.tokens + self.tree.cold_tokens)

    def prefix_match(self, job: Job) -> int:
        return self.tree.match(job.cache_key, job.prompt)

    def cache_size(self) -> int:
        return self.tree.tokens

    def free_slots(self) -> int:
        return max(0, self.inflight_limit - len(self.inflight))
