"""Longest prefix match: admit the waiting job with the most tokens already cached here.

The locality baseline (SGLang's default policy): it maximises prefix reuse and ignores
fairness, so a tenant whose prompts share a hot prefix can starve the others.
Ties go to the earliest arrival.
"""

from __future__ import annotations

from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.policy import LocalPolicy
from fairgate.scheduler.prefix_queue import PrefixQueue
from fairgate.scheduler.radix import RadixTree
from fairgate.scheduler.tenants import TenantBook


class LPM(LocalPolicy):
    def __init__(self, tenants: TenantBook, tree: RadixTree) -> None:
        super().__init__(tenants)
        self._queue = PrefixQueue(tree)

    def __len__(self) -> int:
        return len(self._queue)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._queue

    def push(self, record: JobRecord) -> None:
        self._queue.add(record)

    def remove(self, job_id: str) -> JobRecord:
        return self._queue.remove(job_id)

    def pop_next(self) -> JobRecord | None:
        record = self._queue.best(self._queue.tenants())
        return None if record is None else self._queue.remove(record.job_id)
