import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairgate.scheduler import InflightTuner, InvalidInput, tune_inflight_limit
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


def test_tuner_shrinks_to_what_a_queueing_engine_runs():
    tuner = InflightTuner(4)
    assert tuner.observe(2, 2, 0.0) == 3  # one reading: at most one down
    assert tuner.observe(2, 2, 0.1) == 2  # queued twice running: what it runs
    assert tuner.observe(2, 0, 0.2) == 3  # the first probe goes at once
    assert tuner.observe(2, 1, 0.3) == 2  # refuted
    assert tuner.observe(2, 0, 0.4) == 2  # backing off: 2 s
    assert tuner.observe(2, 0, 2.2) == 2
    assert tuner.observe(2, 0, 2.4) == 3  # probes again
    assert tuner.observe(2, 1, 2.5) == 2  # refuted again: the wait doubles to 4 s
    assert tuner.observe(2, 0, 6.0) == 2
    assert tuner.observe(2, 0, 6.6) == 3


def test_tuner_says_while_a_probe_awaits_the_engine():
    tuner = InflightTuner(2)
    assert not tuner.probing
    assert tuner.observe(2, 0, 0.0) == 3 and tuner.probing
    assert tuner.observe(2, 1, 0.1) == 2 and not tuner.probing  # refuted
    assert tuner.observe(1, 0, 0.2) == 2 and not tuner.probing  # not full: no probe


def test_tuner_climbs_while_the_engine_absorbs_and_recovers_a_transient():
    tuner = InflightTuner(2, ceiling=6)
    for t in range(10):
        tuner.observe(tuner.limit, 0, float(t))
    assert tuner.limit == 6  # every probe absorbed: no waiting between them
    assert tuner.observe(5, 1, 10.0) == 5  # a request caught between two steps
    assert tuner.observe(5, 0, 10.1) == 6  # back up at once: 6 ran without a queue


def _fraction_over(capacity: int, readings: int, dt: float) -> float:
    """A fixed-capacity engine that always has more work than it can run."""
    tuner = InflightTuner(1, ceiling=256)
    over = 0
    for i in range(readings):
        sent = tuner.limit
        tuner.observe(min(sent, capacity), max(0, sent - capacity), i * dt)
        over += sent > capacity
    return over / readings


@settings(max_examples=50, deadline=None)
@given(capacity=st.integers(1, 40), dt=st.sampled_from([0.025, 0.25, 5.0]))
def test_a_full_engine_rarely_holds_a_job_of_ours_in_its_fifo(capacity, dt):
    readings = 4000 if dt < 1 else 400
    assert _fraction_over(capacity, readings, dt) <= 0.1


@settings(max_examples=200, deadline=None)
@given(
    readings=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 5)), max_size=60),
    floor=st.integers(1, 4),
)
def test_the_tuner_stays_between_floor_and_ceiling(readings, floor):
    tuner = InflightTuner(8, floor=floor, ceiling=16)
    for i, (running, waiting) in enumerate(readings):
        assert floor <= tuner.observe(running, waiting, i * 0.5) <= 16
