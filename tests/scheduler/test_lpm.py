from fairgate.scheduler import Job
from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.lpm import LPM
from fairgate.scheduler.radix import RadixTree
from fairgate.scheduler.tenants import TenantBook


def _record(seq: int, tenant: str, prompt: tuple[int, ...]) -> JobRecord:
    return JobRecord(Job(f"j{seq}", tenant, "m", prompt, 1), seq, "r", 0.0, 0)


def test_longest_cached_prefix_first_then_arrival_order():
    tree = RadixTree(100)
    lpm = LPM(TenantBook(), tree)
    tree.insert(("m", ""), (1, 2, 3))
    lpm.push(_record(1, "a", (7, 7)))
    lpm.push(_record(2, "b", (1, 2, 8)))
    lpm.push(_record(3, "a", (1, 2, 3, 4)))
    lpm.push(_record(4, "c", (1, 2, 3, 5)))
    assert [lpm.pop_next().job_id for _ in range(4)] == ["j3", "j4", "j2", "j1"]
    assert lpm.pop_next() is None


def test_locality_ignores_fairness():
    """The reason DLPM exists: a tenant on the hot prefix starves the others under LPM."""
    tree = RadixTree(1000)
    lpm = LPM(TenantBook(), tree)
    hot = tuple(range(50))
    tree.insert(("m", ""), hot)
    for i in range(10):
        lpm.push(_record(i, "hot", (*hot, i)))
    lpm.push(_record(100, "cold", (999,)))
    assert [lpm.pop_next().tenant for _ in range(10)] == ["hot"] * 10
