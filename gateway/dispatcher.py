"""The asynchronous shell around the scheduler's pure core.

The scheduler decides; this module waits. Each request parks on a future until the
scheduler admits it to a replica, and every stream event is passed back so the scheduler can
charge tenants and free slots. Everything runs on the event loop's thread, so the core needs
no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from fairgate.gateway.errors import RateLimited, Unavailable
from fairgate.scheduler import (
    InflightTuner,
    Job,
    NoReplica,
    QueueFull,
    Scheduler,
    UnknownJob,
    UnknownReplica,
)


class Dispatcher:
    def __init__(
        self,
        scheduler: Scheduler,
        clock: Callable[[], float] = time.monotonic,
        *,
        adaptive: bool = False,
        ceiling: int | None = None,
    ) -> None:
        self.scheduler = scheduler
        self._clock = clock
        self._adaptive = adaptive
        cfg = scheduler.config
        self._floor = cfg.inflight_floor
        self._ceiling = cfg.inflight_ceiling if ceiling is None else max(ceiling, self._floor)
        self._tuners: dict[str, InflightTuner] = {}
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._running: set[str] = set()
        self._wake: asyncio.TimerHandle | None = None
        self._wake_due = 0.0

    async def acquire(
        self,
        job_id: str,
        tenant: str,
        model: str,
        prompt: tuple[int, ...],
        max_tokens: int,
        exclude: frozenset[str] = frozenset(),
    ) -> str:
        """Wait until the scheduler admits the job; return the replica it runs on."""
        job = Job(
            job_id=job_id,
            tenant=tenant,
            model=model,
            prompt=prompt,
            max_tokens=max_tokens,
            exclude=exclude,
        )
        try:
            self.scheduler.arrive(job, self._clock())
        except QueueFull as full:
            retry = max(1, round(full.retry_after_s))
            raise RateLimited(
                f"tenant '{tenant}' has too many queued requests; retry later",
                headers={"Retry-After": str(retry)},
            ) from None
        except NoReplica:
            raise Unavailable(f"no healthy replica of model '{model}'") from None
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = future
        self.pump()
        try:
            replica = await future
        except BaseException:
            # Cancelled while queued, or in the instant after admission: either way the
            # scheduler must forget the job so its slot and queue place are freed.
            self._waiting.pop(job_id, None)
            self._forget(job_id)
            raise
        self._running.add(job_id)
        return replica

    def pump(self) -> None:
        """Release every job the scheduler admits now."""
        now = self._clock()
        for dispatch in self.scheduler.admit(now):
            future = self._waiting.pop(dispatch.job_id, None)
            if future is None or future.done():
                self._forget(dispatch.job_id)
                continue
            future.set_result(dispatch.replica_id)
        self._wake_at(self.scheduler.next_hold_expiry(now), now)

    def _wake_at(self, expiry: float | None, now: float) -> None:
        """Pump again when a held slot is given up (``SchedulerConfig.anticipation_s``)."""
        if expiry is None or (self._wake is not None and self._wake_due <= expiry):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without a loop (tests): the next event pumps
            return
        if self._wake is not None:
            self._wake.cancel()
        self._wake_due = expiry
        self._wake = loop.call_later(max(0.0, expiry - now) + 1e-3, self._woken)

    def _woken(self) -> None:
        self._wake = None
        self.pump()

    def tokens(self, job_id: str, n: int) -> None:
        if job_id in self._running:
            self.scheduler.tokens(job_id, n, self._clock())

    def release(self, job_id: str) -> None:
        """The job's replica failed before output: free its slot so it can be routed again."""
        self._forget(job_id)

    def finish(self, job_id: str, cached_tokens: int | None = None) -> None:
        """The job ended. Engines report their real cached-prompt count only in the final
        usage, so the scheduler's first-token correction of the prompt charge happens here."""
        if job_id in self._running:
            self._running.discard(job_id)
            self.scheduler.first_token(job_id, cached_tokens, self._clock())
            self.scheduler.finish(job_id, self._clock())
        else:
            self._forget(job_id)
        self.pump()

    def add_replica(self, replica_id: str, model: str) -> None:
        """A new replica joins unhealthy: it takes work once a health check passes."""
        self.scheduler.add_replica(replica_id, model)
        self.scheduler.set_replica_health(replica_id, False, self._clock())

    def remove_replica(self, replica_id: str) -> None:
        """Route nothing more to the replica. Its queued jobs move to the model's other
        replicas; those with nowhere to go fail with 503. Running jobs finish where they are."""
        self.scheduler.remove_replica(replica_id, self._clock())
        for job_id in self.scheduler.take_failed():
            future = self._waiting.pop(job_id, None)
            if future is not None and not future.done():
                future.set_exception(
                    Unavailable(f"replica {replica_id} was removed and no other replica is up")
                )
        self.pump()

    def engine_load(self, replica_id: str, running: int, waiting: int) -> bool:
        """The engine's own counts: shrink the in-flight limit when the engine starts queueing
        (so order is decided here, not by its FIFO), grow it while the engine keeps up. True
        while a probe awaits the engine's answer: the caller should read it again soon."""
        if not self._adaptive:
            return False
        tuner = self._tuners.get(replica_id)
        if tuner is None:
            initial = self.scheduler.config.inflight_initial
            tuner = InflightTuner(initial, floor=self._floor, ceiling=self._ceiling)
            self._tuners[replica_id] = tuner
        current = tuner.limit
        limit = tuner.observe(running, waiting, self._clock())
        if limit != current:
            try:
                self.scheduler.set_inflight_limit(replica_id, limit)
            except UnknownReplica:  # read just before a reload removed it
                self._tuners.pop(replica_id, None)
                return False
            self.pump()
        return tuner.probing

    def replica_health(self, replica_id: str, healthy: bool) -> None:
        self.scheduler.set_replica_health(replica_id, healthy, self._clock())
        self.pump()

    def _forget(self, job_id: str) -> None:
        self._running.discard(job_id)
        with contextlib.suppress(UnknownJob):
            self.scheduler.cancel(job_id, self._clock())
        self.pump()
