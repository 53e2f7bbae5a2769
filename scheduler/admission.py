"""Admission: how many jobs a replica may run, and when a refused client should come back.

The scheduler decides the order of work only if the engine never queues work of its own: a
job handed to a busy engine waits in the engine's FIFO, where fairness cannot reach it. So each
replica has an in-flight limit, and the gateway tunes it from the engine's own counts:

- the engine reports waiting > 0: it cannot run all we sent; shrink to what it does run;
- it reports no waiting and runs all we allow: probe one slot more (additive increase).

That keeps every engine just saturated. ``tune_inflight_limit`` is that rule as a pure
function; the gateway calls it with fresh counts and passes the result to
``Scheduler.set_inflight_limit``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fairgate.scheduler.errors import InvalidInput

MIN_RETRY_AFTER_S = 1.0
MAX_RETRY_AFTER_S = 60.0


def tune_inflight_limit(
    limit: int, running: int, waiting: int, *, floor: int = 1, ceiling: int = 256
) -> int:
    """The next in-flight limit for a replica whose engine runs ``running`` and queues
    ``waiting`` requests."""
    if floor < 1 or ceiling < floor:
        raise InvalidInput("need 1 <= floor <= ceiling")
    if running < 0 or waiting < 0:
        raise InvalidInput("running and waiting must be >= 0")
    if waiting > 0:
        limit = min(limit, running)
    elif running >= limit:
        limit += 1
    return max(floor, min(ceiling, limit))


@dataclass(slots=True)
class RetryAfter:
    """A Retry-After estimate: a moving average of how long admitted jobs run.

    A tenant refused at its queue bound gets a place back when one of its queued jobs starts,
    and a job starts when a running one ends, so one average run time is the natural wait.
    Clamped to [1 s, 60 s]; 1 s until a job has finished.
    """

    average_s: float | None = None
    alpha: float = 0.2

    def observe(self, run_s: float) -> None:
        if run_s < 0:
            return
        if self.average_s is None:
            self.average_s = run_s
        else:
            self.average_s += self.alpha * (run_s - self.average_s)

    def estimate(self) -> float:
        if self.average_s is None:
            return MIN_RETRY_AFTER_S
        return max(MIN_RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, self.average_s))
