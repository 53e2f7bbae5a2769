"""The baseline routers: round robin, least load, cache-aware longest prefix match (SGLang,
vllm-router), and Preble's prefix-aware exploit/explore."""

from __future__ import annotations

from collections.abc import Sequence

from fairgate.scheduler.config import SchedulerConfig
from fairgate.scheduler.job import Job
from fairgate.scheduler.router import C, Router, imbalanced, least_loaded, least_work
from fairgate.scheduler.tenants import TenantBook


class RoundRobin(Router):
    """Each model's candidates in turn, whatever their load or cache."""

    def __init__(self, config: SchedulerConfig, tenants: TenantBook) -> None:
        super().__init__(config, tenants)
        self._next: dict[str, int] = {}

    def route(self, job: Job, candidates: Sequence[C]) -> C:
        turn = self._next.get(job.model, 0)
        self._next[job.model] = turn + 1
        return candidates[turn % len(candidates)]


class LeastLoad(Router):
    """Fewest queued + in-flight jobs (join the shortest queue)."""

    def route(self, job: Job, candidates: Sequence[C]) -> C:
        return least_loaded(candidates)


class LongestPrefix(Router):
    """SGLang's cache-aware router (sgl-model-gateway ``cache_aware``), on our radix trees.

    1. If loads are too uneven (max - min > ``balance_abs_threshold`` and max > min *
       ``balance_rel_threshold``), take the least loaded replica.
    2. Else, if the best match covers more than ``cache_threshold`` of the prompt, take the
       replica with that match (ties: least loaded).
    3. Else take the replica with the smallest cache (most room for a new prefix; ties: least
       loaded), which spreads unrelated prefixes over the replicas.
    """

    def route(self, job: Job, candidates: Sequence[C]) -> C:
        cfg = self.config
        if len(candidates) > 1 and imbalanced(candidates, cfg.load_gap, cfg.balance_rel_threshold):
            return least_loaded(candidates)
        matches = [c.prefix_match(job) for c in candidates]
        best = max(matches)
        if job.prompt and best / len(job.prompt) > cfg.cache_threshold:
            return least_loaded([c for c, m in zip(candidates, matches, strict=True) if m == best])
        return min(candidates, key=lambda c: (c.cache_size(), c.load()))


class Preble(Router):
    """Preble's E2 global scheduler (Srivatsa et al., "Preble: Efficient Distributed Prompt
    Scheduling for LLM Serving", 2024), the prefix-aware router DLPM's paper compares with.

    Exploit: when some replica caches more of the prompt than is left to compute
    (match > half the prompt), go to the longest match (ties: least work). Explore otherwise:
    the replica with the lowest load cost, its outstanding work plus this job's prefill there
    plus what the prefill would evict from its cache (both in weighted prompt tokens).
    """

    def route(self, job: Job, candidates: Sequence[C]) -> C:
        matches = [c.prefix_match(job) for c in candidates]
        best = max(matches)
        if job.prompt and best > len(job.prompt) / 2:
            self.reasons["exploit"] += 1
            return least_work([c for c, m in zip(candidates, matches, strict=True) if m == best])
        self.reasons["explore"] += 1
        w_p = self.config.prompt_weight

        def cost(pair: tuple[C, int]) -> float:
            c, m = pair
            uncached = len(job.prompt) - m
            return c.work() + uncached * w_p + max(0, uncached - c.cache_room()) * w_p

        return min(zip(candidates, matches, strict=True), key=cost)[0]
