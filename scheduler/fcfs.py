"""First come, first served: admit in arrival order. The baseline with no fairness at all."""

from __future__ import annotations

from fairgate.scheduler.fifo import SeqQueue
from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.policy import LocalPolicy
from fairgate.scheduler.tenants import TenantBook


class FCFS(LocalPolicy):
    def __init__(self, tenants: TenantBook) -> None:
        super().__init__(tenants)
        self._queue = SeqQueue()

    def __len__(self) -> int:
        return len(self._queue)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._queue

    def push(self, record: JobRecord) -> None:
        self._queue.push(record)

    def remove(self, job_id: str) -> JobRecord:
        return self._queue.remove(job_id)

    def pop_next(self) -> JobRecord | None:
        return self._queue.pop()
