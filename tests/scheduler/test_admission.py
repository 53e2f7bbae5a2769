import pytest

from fairgate.scheduler import InvalidInput, tune_inflight_limit
from fairgate.scheduler.admission import MAX_RETRY_AFTER_S, RetryAfter


def test_engine_queueing_shrinks_the_limit_to_what_it_runs():
    assert tune_inflight_limit(8, running=5, waiting=3) == 5
    assert tune_inflight_limit(8, running=0, waiting=3) == 1  # never below the floor


def test_a_saturated_engine_without_a_queue_gets_one_more_slot():
    assert tune_inflight_limit(4, running=4, waiting=0) == 5
    assert tune_inflight_limit(4, running=2, waiting=0) == 4  # not saturated: leave it
    assert tune_inflight_limit(16, running=16, waiting=0, ceiling=16) == 16


def test_tuning_rejects_nonsense():
    with pytest.raises(InvalidInput):
        tune_inflight_limit(4, running=-1, waiting=0)
    with pytest.raises(InvalidInput):
        tune_inflight_limit(4, running=1, waiting=0, floor=0)


def test_retry_after_follows_run_times_within_bounds():
    retry = RetryAfter()
    assert retry.estimate() == 1.0
    retry.observe(10.0)
    assert retry.estimate() == 10.0
    retry.observe(20.0)
    assert retry.estimate() == pytest.approx(12.0)
    for _ in range(100):
        retry.observe(1000.0)
    assert retry.estimate() == MAX_RETRY_AFTER_S
