"""Waiting jobs of one replica, kept at their exact prefix-match depth in the replica's tree.

LPM and DLPM admit the waiting job whose prompt has the longest cached prefix. Re-matching
every waiting job at every admission costs O(queue * prompt); with thousands of waiting jobs
that is milliseconds. Instead each job is *parked* where its prompt stops matching: on a node
of the radix tree, at a depth, keyed by the next token it would need. The tree reports every
structural change (``radix.TreeListener``) and only the jobs that change move:

- ``extended(node, child)``: jobs parked at ``(node, node.end, child's first token)`` walk on
  into the new edge. No other job can gain: a longer match must use the new tokens, and the
  new tokens start there.
- ``split(top, bottom)``: jobs parked inside the cut edge above the cut move to ``top``; their
  match is unchanged.
- ``trimmed(node)`` / ``removed(node, parent)``: eviction; jobs parked below the new end move up.

So each job's match is exact at all times, and the work is proportional to the jobs whose match
changes. Per tenant, a max-heap orders jobs by (match, earliest arrival) with lazy invalidation
(each re-park bumps the job's version), so "best job among these tenants" is one heap peek per
tenant.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.radix import Node, RadixTree

# (depth, next token the prompt needs, or None when the whole prompt is matched)
_Key = tuple[int, int | None]
# (-match, seq, version, job id): heapq is a min-heap, so the longest match comes first
_Entry = tuple[int, int, int, str]


class PrefixQueue:
    def __init__(self, tree: RadixTree) -> None:
        self._tree = tree
        tree.listener = self
        self._records: dict[str, JobRecord] = {}
        self._where: dict[str, tuple[Node, int]] = {}
        self._parked: dict[Node, dict[_Key, dict[str, None]]] = {}
        self._version: dict[str, int] = {}
        self._next_version = 0
        self._by_tenant: dict[str, dict[str, None]] = {}
        self._heaps: dict[str, list[_Entry]] = {}

    # -- queue -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._records

    def tenants(self) -> list[str]:
        """Tenants with waiting jobs, in the order they became backlogged."""
        return list(self._by_tenant)

    def has_tenant(self, tenant: str) -> bool:
        return tenant in self._by_tenant

    def match(self, job_id: str) -> int:
        return self._where[job_id][1]

    def add(self, record: JobRecord) -> None:
        job = record.job
        self._records[job.job_id] = record
        self._by_tenant.setdefault(job.tenant, {})[job.job_id] = None
        self._heaps.setdefault(job.tenant, [])
        node, depth = self._tree.locate(job.cache_key, job.prompt)
        self._park(record, node, depth)

    def remove(self, job_id: str) -> JobRecord:
        self._unpark(job_id)
        record = self._records.pop(job_id)
        del self._version[job_id]
        jobs = self._by_tenant[record.tenant]
        del jobs[job_id]
        if not jobs:
            del self._by_tenant[record.tenant]
            del self._heaps[record.tenant]
        return record

    def best(self, tenants: Iterable[str]) -> JobRecord | None:
        """The waiting job of one of ``tenants`` with the longest match (then earliest arrival)."""
        best_entry: _Entry | None = None
        for tenant in tenants:
            entry = self._top(tenant)
            if entry is not None and (best_entry is None or entry[:2] < best_entry[:2]):
                best_entry = entry
        return None if best_entry is None else self._records[best_entry[3]]

    def head(self, tenant: str) -> tuple[JobRecord, int] | None:
        """``tenant``'s waiting job with the longest match (then earliest arrival), and that
        match; None when it has no waiting job."""
        entry = self._top(tenant)
        return None if entry is None else (self._records[entry[3]], -entry[0])

    def _top(self, tenant: str) -> _Entry | None:
        heap = self._heaps.get(tenant)
        while heap:
            entry = heap[0]
            if self._version.get(entry[3]) == entry[2]:
                return entry
            heapq.heappop(heap)
        return None

    # -- parking ---------------------------------------------------------------------------
    def _park(self, record: JobRecord, node: Node, depth: int) -> None:
        job_id = record.job_id
        prompt = record.job.prompt
        key = (depth, prompt[depth] if depth < len(prompt) else None)
        self._parked.setdefault(node, {}).setdefault(key, {})[job_id] = None
        self._where[job_id] = (node, depth)
        self._next_version += 1
        self._version[job_id] = self._next_version
        tenant = record.tenant
        heap = self._heaps[tenant]
        heapq.heappush(heap, (-depth, record.seq, self._next_version, job_id))
        if len(heap) > 2 * len(self._by_tenant[tenant]) + 32:
            self._rebuild_heap(tenant)

    def _unpark(self, job_id: str) -> None:
        node, depth = self._where.pop(job_id)
        prompt = self._records[job_id].job.prompt
        key = (depth, prompt[depth] if depth < len(prompt) else None)
        buckets = self._parked[node]
        bucket = buckets[key]
        del bucket[job_id]
        if not bucket:
            del buckets[key]
            if not buckets:
                del self._parked[node]

    def _rebuild_heap(self, tenant: str) -> None:
        heap = [
            (-self._where[j][1], self._records[j].seq, self._version[j], j)
            for j in self._by_tenant[tenant]
        ]
        heapq.heapify(heap)
        self._heaps[tenant] = heap

    def _move(self, job_ids: Iterable[str], node: Node, depth: int | None = None) -> None:
        """Re-park jobs at ``node``: at ``depth``, or as deep as they now match below it."""
        for job_id in job_ids:
            record = self._records[job_id]
            if depth is None:
                target, at = self._tree.walk(node, record.job.prompt)
            else:
                target, at = node, depth
            self._park(record, target, at)

    # -- radix.TreeListener ----------------------------------------------------------------
    def extended(self, node: Node, child: Node) -> None:
        buckets = self._parked.get(node)
        if buckets is None:
            return
        bucket = buckets.pop((node.end, child.seq[child.start]), None)
        if bucket is None:
            return
        if not buckets:
            del self._parked[node]
        self._move(bucket, node)

    def split(self, top: Node, bottom: Node) -> None:
        buckets = self._parked.get(bottom)
        if buckets is None:
            return
        upper = {key: bucket for key, bucket in buckets.items() if key[0] <= top.end}
        if not upper:
            return
        for key in upper:
            del buckets[key]
        if not buckets:
            del self._parked[bottom]
        self._parked[top] = upper
        for key, bucket in upper.items():
            for job_id in bucket:
                self._where[job_id] = (top, key[0])

    def trimmed(self, node: Node) -> None:
        buckets = self._parked.get(node)
        if buckets is None:
            return
        cut = [key for key in buckets if key[0] > node.end]
        moved: list[str] = []
        for key in cut:
            moved.extend(buckets.pop(key))
        if not buckets:
            del self._parked[node]
        self._move(moved, node, node.end)

    def removed(self, node: Node, parent: Node) -> None:
        buckets = self._parked.pop(node, None)
        if buckets is None:
            return
        moved = [job_id for bucket in buckets.values() for job_id in bucket]
        self._move(moved, parent, parent.end)
