from fairgate.scheduler import Job
from fairgate.scheduler.fifo import SeqQueue
from fairgate.scheduler.job import JobRecord


def _record(seq: int) -> JobRecord:
    return JobRecord(Job(f"j{seq}", "t", "m", (), 1), seq, "r", 0.0, 0)


def test_pops_in_arrival_order_whatever_the_push_order():
    queue = SeqQueue()
    for seq in (5, 2, 9, 1):
        queue.push(_record(seq))
    assert [queue.pop().seq for _ in range(4)] == [1, 2, 5, 9]
    assert queue.pop() is None


def test_remove_from_the_middle_and_re_push():
    queue = SeqQueue()
    records = [_record(seq) for seq in range(100)]
    for record in records:
        queue.push(record)
    for seq in range(0, 100, 2):
        queue.remove(f"j{seq}")
    queue.push(records[4])  # re-routed back: takes its arrival place again
    assert "j4" in queue and "j6" not in queue
    assert [queue.pop().seq for _ in range(3)] == [1, 3, 4]
    assert len(queue) == 48
