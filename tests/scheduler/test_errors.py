import fairgate.scheduler.errors as errors
from fairgate.scheduler import SchedulerError


def test_every_error_is_a_scheduler_error_and_the_docstring_draws_them_all():
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    for cls in classes:
        assert issubclass(cls, SchedulerError)
        assert cls.__name__ in errors.__doc__


def test_errors_carry_their_subject():
    assert errors.QueueFull("t", 2.5).retry_after_s == 2.5
    assert errors.NoReplica("m").model == "m"
    assert errors.UnknownJob("j").job_id == "j"
    assert errors.ConfigError("quantum", "bad").key == "quantum"
    assert issubclass(errors.ConfigError, ValueError)
