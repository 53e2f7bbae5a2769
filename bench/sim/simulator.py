"""The discrete-event simulator: the real ``Scheduler`` driving modelled engines.

Events are request arrivals and engine step ends, in time order. At every event the simulator
calls ``Scheduler.admit`` and hands dispatched jobs to their replica's engine
(``replicas.engine_model``, the engine of the ``sim`` provider); at every step end it reports
what the engine did with the calls the gateway makes (``first_token`` with the engine's cached
count, ``tokens`` in streamed chunks, ``finish``), and, under adaptive admission, the engine's
running/waiting counts through ``InflightTuner`` as the gateway does. So the decisions
measured here are the decisions production makes.

Requests of one *session* (multi-turn chat, a tree of thought, a closed-loop client) run one
after the other: the next arrives ``think`` seconds after the previous one finished. No
request starts after the window; those running finish (their latency counts, their service
after the window does not).

Fairness is measured on the engine's truth: uncached prompt tokens * w_p + cached * w_c at the
first token, generated tokens * w_q as they are produced, inside the window.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field

from bench.sim.engine import CostModel, Engine, Step
from bench.sim.metrics import SimResult, TenantResult
from bench.sim.workload import Request
from fairgate.scheduler import InflightTuner, Job, QueueFull, Scheduler, SchedulerConfig

MODEL = "sim-model"


@dataclass(slots=True, frozen=True)
class SimConfig:
    scheduler: SchedulerConfig
    replicas: int = 4
    cost: CostModel = field(default_factory=CostModel)
    weights: dict[str, float] = field(default_factory=dict)
    report_every: int = 8  # generated tokens per Scheduler.tokens() call, like an SSE chunk
    adaptive_admission: bool = True  # the gateway's default
    window: float | None = None  # default: the last open-loop arrival
    bucket_s: float = 5.0  # resolution of the service series and the service gap


_ARRIVAL, _STEP_END, _WAKE = 0, 1, 2


class Simulation:
    def __init__(self, config: SimConfig, requests: list[Request]) -> None:
        self.config = config
        self.window = config.window or max((r.at for r in requests), default=0.0) or 1.0
        self.scheduler = Scheduler(config.scheduler)
        self.engines: dict[str, Engine] = {}
        cfg = config.scheduler
        self.tuners: dict[str, InflightTuner] = {}
        for i in range(config.replicas):
            replica_id = f"replica-{i}"
            self.engines[replica_id] = Engine(config.cost)
            self.scheduler.add_replica(replica_id, MODEL, cache_tokens=config.cost.cache_tokens)
            self.tuners[replica_id] = InflightTuner(
                cfg.inflight_initial, floor=cfg.inflight_floor, ceiling=cfg.inflight_ceiling
            )
        self.tenants: dict[str, TenantResult] = {}
        for tenant in sorted({r.tenant for r in requests}):
            weight = config.weights.get(tenant, 1.0)
            self.scheduler.set_tenant(tenant, weight)
            self.tenants[tenant] = TenantResult(tenant, weight)
        self._by_id = {r.request_id: r for r in requests}
        self._next: dict[str, Request] = {}  # session follow-ups, by the previous request's id
        first: dict[str, Request] = {}
        self._starts: list[Request] = []
        for r in requests:
            if r.session and r.session in first:
                self._next[first[r.session].request_id] = r
            else:
                self._starts.append(r)
            if r.session:
                first[r.session] = r
        self._arrived: dict[str, float] = {}
        self._pending: dict[str, int] = {}  # generated tokens not yet reported
        self._outputs: dict[str, Step] = {}
        self._events: list[tuple[float, int, int, str]] = []
        self._order = 0
        self._wakes: set[float] = set()
        self._outstanding: dict[str, int] = defaultdict(int)
        self._idle_since: dict[str, float] = {t: 0.0 for t in self.tenants}

    def run(self) -> SimResult:
        for request in self._starts:
            if request.at <= self.window:
                self._push(request.at, _ARRIVAL, request.request_id)
        now = 0.0
        while self._events:
            now, _, kind, key = heapq.heappop(self._events)
            if kind == _ARRIVAL:
                self._arrive(self._by_id[key], now)
            elif kind == _STEP_END:
                self._step_end(key, now)
            else:  # _WAKE: a held slot was given up
                self._wakes.discard(now)
            self._pump(now)
        for tenant, since in self._idle_since.items():
            self.tenants[tenant].idle.append((since, max(now, self.window)))
        engines = self.engines.values()
        return SimResult(
            self.tenants,
            self.window,
            now,
            sum(e.prompt_tokens for e in engines),
            sum(e.cached_tokens for e in engines),
            self.scheduler.stats(),
            self.config.bucket_s,
        )

    def _push(self, at: float, kind: int, key: str) -> None:
        self._order += 1
        heapq.heappush(self._events, (at, self._order, kind, key))

    def _arrive(self, request: Request, now: float) -> None:
        tenant = self.tenants[request.tenant]
        tenant.sent += 1
        declared = request.output if request.max_tokens is None else request.max_tokens
        job = Job(request.request_id, request.tenant, MODEL, request.prompt, declared)
        try:
            self.scheduler.arrive(job, now)
        except QueueFull:
            tenant.rejected += 1
            self._follow_up(request, now)
            return
        self._arrived[request.request_id] = now
        self._busy(request.tenant, now, +1)

    def _busy(self, tenant: str, now: float, delta: int) -> None:
        before = self._outstanding[tenant]
        self._outstanding[tenant] = before + delta
        if before == 0 and delta > 0:
            self.tenants[tenant].idle.append((self._idle_since.pop(tenant), now))
        elif before + delta == 0:
            self._idle_since[tenant] = now

    def _follow_up(self, request: Request, now: float) -> None:
        follow = self._next.get(request.request_id)
        if follow is not None and now + follow.think <= self.window:
            self._push(now + follow.think, _ARRIVAL, follow.request_id)

    def _pump(self, now: float) -> None:
        for dispatch in self.scheduler.admit(now):
            request = self._by_id[dispatch.job_id]
            self.engines[dispatch.replica_id].submit(
                request.request_id, request.prompt, request.output, (MODEL, "")
            )
        expiry = self.scheduler.next_hold_expiry(now)
        if expiry is not None and expiry not in self._wakes:
            self._wakes.add(expiry)
            self._push(expiry, _WAKE, "")
        for replica_id, engine in self.engines.items():
            if not engine.busy and engine.has_work():
                step = engine.step()
                engine.busy = True
                self._outputs[replica_id] = step
                self._push(now + step.duration, _STEP_END, replica_id)

    def _step_end(self, replica_id: str, now: float) -> None:
        engine = self.engines[replica_id]
        engine.busy = False
        step = self._outputs.pop(replica_id)
        sched, cfg = self.scheduler, self.config.scheduler
        in_window = now <= self.window
        for job_id, cached in step.first_tokens:
            request = self._by_id[job_id]
            tenant = self.tenants[request.tenant]
            tenant.ttft.append(now - self._arrived[job_id])
            sched.first_token(job_id, cached, now)
            self._pending[job_id] = 1
            if in_window:
                uncached = len(request.prompt) - cached
                cost = uncached * cfg.prompt_weight + cached * cfg.cached_prompt_weight
                tenant.add_service(now, cost, self.config.bucket_s)
        for job_id in step.tokens:
            self._pending[job_id] += 1
            if self._pending[job_id] >= self.config.report_every:
                self._flush(job_id, now)
        if in_window:
            for job_id in [j for j, _ in step.first_tokens] + step.tokens:
                tenant = self.tenants[self._by_id[job_id].tenant]
                tenant.generated += 1
                tenant.add_service(now, cfg.completion_weight, self.config.bucket_s)
        for job_id in step.finished:
            self._finish(job_id, now)
        if self.config.adaptive_admission:
            tuner = self.tuners[replica_id]
            sched.set_inflight_limit(
                replica_id, tuner.observe(engine.num_running, engine.num_waiting, now)
            )

    def _finish(self, job_id: str, now: float) -> None:
        self._flush(job_id, now)
        self.scheduler.finish(job_id, now)
        del self._pending[job_id]
        request = self._by_id[job_id]
        tenant = self.tenants[request.tenant]
        tenant.completed += 1
        tenant.latency.append(now - self._arrived.pop(job_id))
        self._busy(request.tenant, now, -1)
        self._follow_up(request, now)

    def _flush(self, job_id: str, now: float) -> None:
        n = self._pending[job_id]
        if n:
            self.scheduler.tokens(job_id, n, now)
            self._pending[job_id] = 0


def simulate(config: SimConfig, requests: list[Request]) -> SimResult:
    return Simulation(config, requests).run()
