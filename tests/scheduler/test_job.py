import pytest

from fairgate.scheduler import InvalidInput, Job, JobState, JobStateError
from fairgate.scheduler.job import JobRecord


@pytest.mark.parametrize(
    "kw",
    [
        {"job_id": ""},
        {"tenant": ""},
        {"model": ""},
        {"prompt": [1, 2]},
        {"max_tokens": -1},
        {"max_tokens": 1.5},
    ],
)
def test_malformed_jobs_are_rejected(kw):
    base = {"job_id": "j", "tenant": "t", "model": "m", "prompt": (1,), "max_tokens": 1}
    with pytest.raises(InvalidInput):
        Job(**{**base, **kw})


def test_cache_key_separates_adapters():
    assert Job("j", "t", "m", (), 1, namespace="lora").cache_key == ("m", "lora")


def test_transitions_check_their_starting_state():
    record = JobRecord(Job("j", "t", "m", (1,), 1), 1, "r", 0.0, 0)
    with pytest.raises(JobStateError):
        record.finish()
    record.start(1.0, 0)
    assert record.state is JobState.RUNNING
    with pytest.raises(JobStateError):
        record.fail()
    record.see_first_token()
    with pytest.raises(JobStateError):
        record.see_first_token()
