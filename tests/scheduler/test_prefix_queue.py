"""The prefix queue keeps every waiting job at its exact match, through inserts, splits and
evictions: checked against re-matching every job from scratch."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fairgate.scheduler import Job
from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.prefix_queue import PrefixQueue
from fairgate.scheduler.radix import RadixTree

SETTINGS = settings(max_examples=300, deadline=None, database=None)

tokens = st.lists(st.integers(0, 2), max_size=8).map(tuple)
op = st.one_of(
    st.tuples(st.just("insert"), st.sampled_from(["", "lora"]), tokens),
    st.tuples(st.just("add"), st.sampled_from(["a", "b", "c"]), tokens),
    st.tuples(st.just("remove"), st.integers(0, 50), st.just(())),
    st.tuples(st.just("pop"), st.sampled_from(["a", "b", "c"]), st.just(())),
)


@SETTINGS
@given(budget=st.integers(0, 25), ops=st.lists(op, max_size=40))
def test_matches_and_best_equal_brute_force(budget, ops):
    tree = RadixTree(budget)
    queue = PrefixQueue(tree)
    waiting: dict[str, JobRecord] = {}
    seq = 0
    for kind, arg, toks in ops:
        if kind == "insert":
            tree.insert(("m", arg), toks)
        elif kind == "add":
            seq += 1
            namespace = "lora" if seq % 3 else ""
            record = JobRecord(
                Job(f"j{seq}", arg, "m", toks, 1, namespace=namespace), seq, "r", 0.0, 0
            )
            queue.add(record)
            waiting[record.job_id] = record
        elif kind == "remove" and waiting:
            job_id = sorted(waiting)[arg % len(waiting)]
            assert queue.remove(job_id) is waiting.pop(job_id)
        elif kind == "pop":
            tenants = [t for t in ("a", "b", "c") if t != arg]  # "all but one tenant"
            best = queue.best(tenants)
            candidates = [r for r in waiting.values() if r.tenant in tenants]
            if not candidates:
                assert best is None
            else:
                expected = max(
                    candidates, key=lambda r: (tree.match(r.job.cache_key, r.job.prompt), -r.seq)
                )
                assert best is expected
                del waiting[queue.remove(best.job_id).job_id]
        for job_id, record in waiting.items():
            assert queue.match(job_id) == tree.match(record.job.cache_key, record.job.prompt)
        assert len(queue) == len(waiting)
        assert set(queue.tenants()) == {r.tenant for r in waiting.values()}


def test_a_dispatch_moves_only_the_jobs_that_share_its_new_tokens():
    tree = RadixTree(1000)
    queue = PrefixQueue(tree)
    system = tuple(range(100))
    records = [
        JobRecord(Job(f"j{i}", "t", "m", (*system, 1000 + i % 4, i), 1), i, "r", 0.0, 0)
        for i in range(40)
    ]
    for record in records:
        queue.add(record)
    tree.insert(("m", ""), (*system, 1002, 99))
    # jobs whose next token is 1002 now match 101 tokens; the others still stop at 100
    assert {queue.match(r.job_id) for r in records if r.job.prompt[100] == 1002} == {101}
    assert {queue.match(r.job_id) for r in records if r.job.prompt[100] != 1002} == {100}
    assert queue.best(["t"]).job.prompt[100] == 1002
