"""A job (one request's scheduling identity) and the state machine it moves through.

    arrive ──► QUEUED ──admit──► RUNNING ──finish──► (forgotten)
                 │  ▲               │
                 │  └─ re-route     └─cancel──► (forgotten)
                 ├─cancel──► (forgotten)
                 └─replica removed, nowhere to go──► FAILED (reported by take_failed)

Each transition is one method on ``JobRecord``; each checks the state it starts from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from fairgate.scheduler.errors import InvalidInput, JobStateError


@dataclass(slots=True, frozen=True)
class Job:
    """What the gateway knows about a request when it arrives.

    ``prompt`` is the token ids (or the gateway's estimate of them); ``namespace`` separates
    caches that must not share prefixes (LoRA adapter, ``cache_salt``); ``exclude`` lists
    replicas not to route to, e.g. the one that just died under a retried request.
    """

    job_id: str
    tenant: str
    model: str
    prompt: tuple[int, ...]
    max_tokens: int
    namespace: str = ""
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.job_id:
            raise InvalidInput("job_id must be a non-empty string")
        if not self.tenant:
            raise InvalidInput("tenant must be a non-empty string")
        if not self.model:
            raise InvalidInput("model must be a non-empty string")
        if not isinstance(self.prompt, tuple):
            raise InvalidInput("prompt must be a tuple of token ids")
        if (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens < 0
        ):
            raise InvalidInput(f"max_tokens must be an integer >= 0, got {self.max_tokens!r}")

    @property
    def cache_key(self) -> tuple[str, str]:
        """The prefix-index namespace: caches are shared only within (model, namespace)."""
        return (self.model, self.namespace)


class JobState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"


@dataclass(slots=True, eq=False)
class JobRecord:
    """The scheduler's mutable bookkeeping for one job.

    ``seq`` is the arrival order; it survives re-routing, so FCFS order is arrival order.
    ``routed_cached`` is the prefix the router expected on ``replica_id`` (charged to the
    router's per-replica deficit); ``predicted_cached`` is the prefix the replica's index held at
    admission (charged to the tenant). ``first_token`` replaces both with the engine's count.
    """

    job: Job
    seq: int
    replica_id: str
    arrived_at: float
    routed_cached: int
    state: JobState = JobState.QUEUED
    predicted_cached: int = 0
    dispatched_at: float | None = None
    first_token_seen: bool = False
    generated: int = 0
    expected_output: int = 0  # charged to the router at routing, settled at the end
    charged_ahead: int = 0  # output tokens charged to the local policy at admission
    expected_work: float = 0.0  # the router's whole charge (settled as the job runs)
    load: float = 0.0  # what the job added to its replica's outstanding work at routing

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def tenant(self) -> str:
        return self.job.tenant

    def _expect(self, state: JobState, event: str) -> None:
        if self.state is not state:
            raise JobStateError(self.job.job_id, self.state.value, event)

    def move(self, replica_id: str, routed_cached: int) -> None:
        self._expect(JobState.QUEUED, "re-route")
        self.replica_id = replica_id
        self.routed_cached = routed_cached

    def start(self, now: float, predicted_cached: int) -> None:
        self._expect(JobState.QUEUED, "admission")
        self.state = JobState.RUNNING
        self.dispatched_at = now
        self.predicted_cached = predicted_cached

    def see_first_token(self) -> None:
        self._expect(JobState.RUNNING, "first_token")
        if self.first_token_seen:
            raise JobStateError(self.job.job_id, "past its first token", "a second first_token")
        self.first_token_seen = True

    def generate(self, n: int) -> None:
        self._expect(JobState.RUNNING, "tokens")
        self.generated += n

    def finish(self) -> None:
        self._expect(JobState.RUNNING, "finish")

    def fail(self) -> None:
        self._expect(JobState.QUEUED, "failure")
        self.state = JobState.FAILED


@dataclass(slots=True, frozen=True)
class Dispatch:
    """Admission's answer: start ``job_id`` on ``replica_id`` now."""

    job_id: str
    replica_id: str
