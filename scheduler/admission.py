"""Admission: how many jobs a replica may run, and when a refused client should come back.

The scheduler decides the order of work only if the engine never queues work of its own: a
job handed to a busy engine waits in the engine's FIFO, where fairness cannot reach it. So each
replica has an in-flight limit, and the gateway tunes it from the engine's own counts:

- the engine reports waiting > 0: it cannot run all we sent; shrink to what it does run;
- it reports no waiting and runs all we allow: probe one slot more (additive increase).

That keeps every engine just saturated. ``tune_inflight_limit`` is that rule as a pure
function. ``InflightTuner`` adds when to probe: an engine that runs exactly what it is allowed
may be full, and a probe that finds it full has put one job in the engine's FIFO, out of the
scheduler's reach, until the next reading. Probing at every reading keeps a job there about
half the time (measured: the light tenants of a flood wait behind it), so a refuted probe
doubles the wait before the next one (``patience_s`` up to ``max_patience_s``) and a probe
the engine absorbs resets it. The gateway and ``bench.sim`` both drive it and pass its limit
to ``Scheduler.set_inflight_limit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
class InflightTuner:
    """One replica's in-flight limit, moved by its engine's readings (``observe``)."""

    limit: int
    floor: int = 1
    ceiling: int = 256
    patience_s: float = 1.0
    max_patience_s: float = 60.0
    _backoff_s: float = field(default=0.0, init=False)
    _next_probe_at: float = field(default=float("-inf"), init=False)
    _probe: int | None = field(default=None, init=False)  # the limit a probe raised to
    _queued: bool = field(default=False, init=False)  # the last reading had a queue
    _absorbed: int = field(default=0, init=False)  # the highest limit run without a queue

    def __post_init__(self) -> None:
        if self.floor < 1 or self.ceiling < self.floor:
            raise InvalidInput("need 1 <= floor <= ceiling")
        if not 0 < self.patience_s <= self.max_patience_s:
            raise InvalidInput("need 0 < patience_s <= max_patience_s")
        self.limit = max(self.floor, min(self.ceiling, self.limit))
        self._backoff_s = self.patience_s

    @property
    def probing(self) -> bool:
        """A probe raised the limit and awaits the engine's answer: read it again soon, since
        until then a job may wait in the engine's FIFO, out of the scheduler's reach."""
        return self._probe is not None

    def observe(self, running: int, waiting: int, now: float) -> int:
        """The limit after a reading of ``running`` and ``waiting`` at time ``now``.

        A queue in one reading may be a request caught between its arrival and the engine's
        next step, so it takes the limit down by one at most (and a probe back); the limit
        returns to the highest level the engine has absorbed without waiting for a probe."""
        if running < 0 or waiting < 0:
            raise InvalidInput("running and waiting must be >= 0")
        if waiting > 0:
            if self._probe is not None:  # refuted: the engine was full
                self._backoff_s = min(self.max_patience_s, 2 * self._backoff_s)
                self._next_probe_at = now + self._backoff_s
                self.limit = self._probe - 1
                self._probe = None
            else:
                self.limit = min(self.limit, max(running, self.limit - 1))
                if self._queued:  # a queue twice running: the engine holds less now
                    self._absorbed = min(self._absorbed, self.limit)
            self.limit = max(self.floor, self.limit)
            self._queued = True
            return self.limit
        self._queued = False
        if running < self.limit:
            return self.limit
        if self._probe is not None:  # absorbed: probing may go on at once
            self._absorbed = max(self._absorbed, self._probe)
            self._backoff_s = self.patience_s
            self._probe = None
        if self.limit < min(self._absorbed, self.ceiling):
            self.limit += 1
        elif now >= self._next_probe_at and self.limit < self.ceiling:
            self.limit += 1
            self._probe = self.limit
        return self.limit


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
