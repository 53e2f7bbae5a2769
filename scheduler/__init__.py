"""fairgate's scheduler: a pure, deterministic core that decides which tenant's job runs next
and on which replica (locality-aware fair scheduling: DLPM locally, D²LPM across replicas).

No I/O, no clock, no global randomness: the gateway and the simulator drive the same
``Scheduler`` with the same events and get the same decisions.
"""

from fairgate.scheduler.admission import InflightTuner, tune_inflight_limit
from fairgate.scheduler.config import Policy, RouterKind, SchedulerConfig
from fairgate.scheduler.core import Scheduler
from fairgate.scheduler.errors import (
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
from fairgate.scheduler.job import Dispatch, Job, JobState
from fairgate.scheduler.stats import ReplicaStats, SchedulerStats, TenantStats

__all__ = [
    "ConfigError",
    "Dispatch",
    "DuplicateJob",
    "DuplicateReplica",
    "InflightTuner",
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
