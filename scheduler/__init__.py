"""fairgate's scheduler: a pure, deterministic core that decides which tenant's job runs next
and on which replica (locality-aware fair scheduling: DLPM locally, D²LPM across replicas).

No I/O, no clock, no global randomness: the gateway and the simulator drive the same
``Scheduler`` with the same events and get the same decisions.
"""

from scheduler.admission import tune_inflight_limit
from scheduler.config import Policy, RouterKind, SchedulerConfig
from scheduler.core import Scheduler
from scheduler.errors import (
    ConfigError,
    DuplicateJob,
    DuplicateReplica,
    InvalidInput,
    JobStateError,
    NoReplica,
    QueueFull,
    SchedulerError,
    UnknownJob,
    UnknownReplica,
)
from scheduler.job import Dispatch, Job, JobState
from scheduler.stats import ReplicaStats, SchedulerStats, TenantStats

__all__ = [
    "ConfigError",
    "Dispatch",
    "DuplicateJob",
    "DuplicateReplica",
    "InvalidInput",
    "Job",
    "JobState",
    "JobStateError",
    "NoReplica",
    "Policy",
    "QueueFull",
    "ReplicaStats",
    "RouterKind",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerError",
    "SchedulerStats",
    "TenantStats",
    "UnknownJob",
    "UnknownReplica",
    "tune_inflight_limit",
]
