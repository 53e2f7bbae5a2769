"""Every error the scheduler raises.

The hierarchy::

    SchedulerError                 base class: catch this to catch them all
    ├── QueueFull                  the tenant already has max_queued_per_tenant jobs waiting (→ 429)
    ├── NoReplica                  no healthy replica serves the job's model (→ 503)
    ├── UnknownJob                 an event names a job the scheduler does not hold
    ├── UnknownReplica             a call names a replica that was never added (or was removed)
    ├── DuplicateJob               arrive() with a job id that is already queued or running
    ├── DuplicateReplica           add_replica() with an id that is already registered
    ├── JobStateError              an event the job's state does not allow (finish while queued)
    └── InvalidInput (ValueError)  a malformed argument
        └── ConfigError            a SchedulerConfig field out of range; names the key

The scheduler never produces HTTP or OpenAI-shaped errors: the gateway maps these.
"""

from __future__ import annotations


class SchedulerError(Exception):
    """Base class of every scheduler error."""


class QueueFull(SchedulerError):
    """The tenant's queue is at its bound; the client should retry after ``retry_after_s``."""

    def __init__(self, tenant: str, retry_after_s: float) -> None:
        super().__init__(
            f"tenant {tenant!r} has too many queued jobs; retry in {retry_after_s:.1f}s"
        )
        self.tenant = tenant
        self.retry_after_s = retry_after_s


class NoReplica(SchedulerError):
    """No healthy, non-excluded replica serves this model."""

    def __init__(self, model: str) -> None:
        super().__init__(f"no healthy replica for model {model!r}")
        self.model = model


class UnknownJob(SchedulerError):
    """The job id is not queued or running (never arrived, or already finished or cancelled)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"unknown job {job_id!r}")
        self.job_id = job_id


class UnknownReplica(SchedulerError):
    """The replica id was never added, or was removed."""

    def __init__(self, replica_id: str) -> None:
        super().__init__(f"unknown replica {replica_id!r}")
        self.replica_id = replica_id


class DuplicateJob(SchedulerError):
    """A job with this id is already queued or running."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} is already queued or running")
        self.job_id = job_id


class DuplicateReplica(SchedulerError):
    """A replica with this id is already registered."""

    def __init__(self, replica_id: str) -> None:
        super().__init__(f"replica {replica_id!r} is already registered")
        self.replica_id = replica_id


class JobStateError(SchedulerError):
    """The event is not allowed in the job's current state (e.g. ``tokens`` on a queued job)."""

    def __init__(self, job_id: str, state: str, event: str) -> None:
        super().__init__(f"job {job_id!r} is {state}; {event} is not allowed")
        self.job_id = job_id
        self.state = state
        self.event = event


class InvalidInput(SchedulerError, ValueError):
    """An argument is malformed (negative token count, empty id, non-positive weight)."""


class ConfigError(InvalidInput):
    """A configuration value is out of range; ``key`` names the offending field."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"scheduler.{key}: {message}")
        self.key = key
