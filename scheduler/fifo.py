"""Jobs in arrival order, removable from anywhere.

A heap keyed by the job's arrival ``seq`` with lazy deletion: a re-routed job keeps its seq, so
it takes its arrival place in the new queue rather than the back of it.
"""

from __future__ import annotations

import heapq

from fairgate.scheduler.job import JobRecord


class SeqQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._items: dict[str, JobRecord] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._items

    def push(self, record: JobRecord) -> None:
        self._items[record.job_id] = record
        heapq.heappush(self._heap, (record.seq, record.job_id))
        if len(self._heap) > 2 * len(self._items) + 32:
            self._heap = [(r.seq, r.job_id) for r in self._items.values()]
            heapq.heapify(self._heap)

    def remove(self, job_id: str) -> JobRecord:
        return self._items.pop(job_id)

    def peek(self) -> JobRecord | None:
        heap, items = self._heap, self._items
        while heap:
            seq, job_id = heap[0]
            record = items.get(job_id)
            if record is not None and record.seq == seq:
                return record
            heapq.heappop(heap)
        return None

    def pop(self) -> JobRecord | None:
        record = self.peek()
        if record is not None:
            heapq.heappop(self._heap)
            del self._items[record.job_id]
        return record
