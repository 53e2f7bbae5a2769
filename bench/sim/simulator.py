"""The discrete-event simulator: the real ``Scheduler`` driving modelled engines.

Events are request arrivals and engine step ends, in time order. At every event the simulator
calls ``Scheduler.admit`` and hands dispatched jobs to their replica's engine; at every step
end it reports what the engine did with the same calls the gateway makes (``first_token``
with the engine's cached count, ``tokens`` in streamed chunks, ``finish``). So the decisions
measured here are the decisions production makes.

Fairness is measured on the engine's truth (uncached prompt tokens at the first token,
generated tokens as they are produced), within the arrival window, when every tenant of the
shipped scenarios is backlogged.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from bench.sim.engine import CostModel, Engine, StepOutput
from bench.sim.workload import Request
from fairgate.scheduler import Job, QueueFull, Scheduler, SchedulerConfig, tune_inflight_limit

MODEL = "sim-model"


@dataclass(slots=True, frozen=True)
class SimConfig:
    scheduler: SchedulerConfig
    replicas: int = 4
    cost: CostModel = field(default_factory=CostModel)
    weights: dict[str, float] = field(default_factory=dict)
    report_every: int = 8  # generated tokens per Scheduler.tokens() call, like an SSE chunk
    adaptive_admission: bool = False


@dataclass(slots=True)
class TenantResult:
    tenant: str
    weight: float = 1.0
    sent: int = 0
    rejected: int = 0
    completed: int = 0
    service: float = 0.0  # weighted tokens served inside the window
    generated: int = 0  # tokens generated inside the window
    ttft: list[float] = field(default_factory=list)

    def ttft_p(self, q: float) -> float:
        if not self.ttft:
            return float("nan")
        ordered = sorted(self.ttft)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class SimResult:
    tenants: dict[str, TenantResult]
    window: float
    makespan: float
    prompt_tokens: int
    cached_tokens: int
    decisions: int

    @property
    def throughput(self) -> float:
        """Generated tokens per second inside the window."""
        return sum(t.generated for t in self.tenants.values()) / self.window

    @property
    def hit_ratio(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def jain(self) -> float:
        """Jain's index of weight-normalised service: 1 is perfectly fair, 1/n is one tenant."""
        xs = [t.service / t.weight for t in self.tenants.values()]
        total = sum(xs)
        return total * total / (len(xs) * sum(x * x for x in xs)) if total else 1.0


_ARRIVAL, _STEP_END = 0, 1


class Simulation:
    def __init__(self, config: SimConfig, requests: list[Request]) -> None:
        self.config = config
        self.requests = requests
        self.window = max((r.at for r in requests), default=0.0)
        self.scheduler = Scheduler(config.scheduler)
        self.engines: dict[str, Engine] = {}
        for i in range(config.replicas):
            replica_id = f"replica-{i}"
            self.engines[replica_id] = Engine(config.cost)
            self.scheduler.add_replica(replica_id, MODEL, cache_tokens=config.cost.cache_tokens)
        self.tenants: dict[str, TenantResult] = {}
        for tenant in sorted({r.tenant for r in requests}):
            weight = config.weights.get(tenant, 1.0)
            self.scheduler.set_tenant(tenant, weight)
            self.tenants[tenant] = TenantResult(tenant, weight)
        self._by_id = {r.request_id: r for r in requests}
        self._pending: dict[str, int] = {}  # generated tokens not yet reported
        self._outputs: dict[str, StepOutput] = {}
        self._events: list[tuple[float, int, int, str]] = []
        self._order = 0

    def run(self) -> SimResult:
        for request in self.requests:
            self._push(request.at, _ARRIVAL, request.request_id)
        now = 0.0
        while self._events:
            now, _, kind, key = heapq.heappop(self._events)
            if kind == _ARRIVAL:
                self._arrive(self._by_id[key], now)
            else:
                self._step_end(key, now)
            self._pump(now)
        engines = self.engines.values()
        return SimResult(
            self.tenants,
            self.window or 1.0,
            now,
            sum(e.prompt_tokens for e in engines),
            sum(e.cached_tokens for e in engines),
            self.scheduler.stats().decisions,
        )

    def _push(self, at: float, kind: int, key: str) -> None:
        self._order += 1
        heapq.heappush(self._events, (at, self._order, kind, key))

    def _arrive(self, request: Request, now: float) -> None:
        tenant = self.tenants[request.tenant]
        tenant.sent += 1
        job = Job(request.request_id, request.tenant, MODEL, request.prompt, request.output)
        try:
            self.scheduler.arrive(job, now)
        except QueueFull:
            tenant.rejected += 1

    def _pump(self, now: float) -> None:
        for dispatch in self.scheduler.admit(now):
            request = self._by_id[dispatch.job_id]
            self.engines[dispatch.replica_id].submit(
                request.request_id, (MODEL, ""), request.prompt, request.output
            )
        for replica_id, engine in self.engines.items():
            if not engine.busy and engine.has_work():
                duration, output = engine.step()
                engine.busy = True
                self._outputs[replica_id] = output
                self._push(now + duration, _STEP_END, replica_id)

    def _step_end(self, replica_id: str, now: float) -> None:
        engine = self.engines[replica_id]
        engine.busy = False
        output = self._outputs.pop(replica_id)
        sched, cfg = self.scheduler, self.config.scheduler
        in_window = now <= self.window
        for job_id, cached in output.first_tokens:
            request = self._by_id[job_id]
            tenant = self.tenants[request.tenant]
            tenant.ttft.append(now - request.at)
            sched.first_token(job_id, cached, now)
            self._pending[job_id] = 1
            if in_window:
                tenant.service += (len(request.prompt) - cached) * cfg.prompt_weight
        for job_id in output.tokens:
            self._pending[job_id] += 1
            if self._pending[job_id] >= self.config.report_every:
                self._flush(job_id, now)
        for job_id in output.finished:
            self._flush(job_id, now)
            sched.finish(job_id, now)
            del self._pending[job_id]
            self.tenants[self._by_id[job_id].tenant].completed += 1
        if in_window:
            for job_id in [j for j, _ in output.first_tokens] + output.tokens:
                tenant = self.tenants[self._by_id[job_id].tenant]
                tenant.generated += 1
                tenant.service += cfg.completion_weight
        if self.config.adaptive_admission:
            limit = sched.stats().replicas[replica_id].inflight_limit
            sched.set_inflight_limit(
                replica_id,
                tune_inflight_limit(
                    limit,
                    running=len(engine.running),
                    waiting=len(engine.waiting),
                    ceiling=4 * self.config.cost.batch_slots,
                ),
            )

    def _flush(self, job_id: str, now: float) -> None:
        n = self._pending[job_id]
        if n:
            self.scheduler.tokens(job_id, n, now)
            self._pending[job_id] = 0


def simulate(config: SimConfig, requests: list[Request]) -> SimResult:
    return Simulation(config, requests).run()
