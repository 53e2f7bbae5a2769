"""The scheduler facade: the one object the gateway and the simulator drive.

    arrive(job)  ── router picks a replica ──► the replica's local queue
    admit()      ── for each replica with free slots, its policy pops the next job ──► Dispatch
    first_token / tokens / finish / cancel ── charge service, free slots

Everything here is bookkeeping that ties the parts together: where each job is, and when
it is charged; what each account is charged is ``charging``'s. The decisions live in the
router (``routers``, ``d2lpm``) and the local policies (``fcfs``, ``vtc``, ``lpm``, ``dlpm``).
Time is an argument; nothing here reads a clock, draws a random number or does I/O, so the
same calls give the same decisions.
"""

from __future__ import annotations

from fairgate.scheduler.admission import RetryAfter
from fairgate.scheduler.anticipation import Anticipation
from fairgate.scheduler.charging import Charging, billable_hit
from fairgate.scheduler.config import Policy, RouterKind, SchedulerConfig
from fairgate.scheduler.d2lpm import D2LPM
from fairgate.scheduler.dlpm import DLPM
from fairgate.scheduler.errors import (
    DuplicateJob,
    DuplicateReplica,
    InvalidInput,
    NoReplica,
    QueueFull,
    UnknownJob,
    UnknownReplica,
)
from fairgate.scheduler.fairness import Ledger
from fairgate.scheduler.fcfs import FCFS
from fairgate.scheduler.job import Dispatch, Job, JobRecord, JobState
from fairgate.scheduler.lpm import LPM
from fairgate.scheduler.policy import LocalPolicy
from fairgate.scheduler.radix import RadixTree
from fairgate.scheduler.replica import Replica
from fairgate.scheduler.router import Router
from fairgate.scheduler.routers import LeastLoad, LongestPrefix, Preble, RoundRobin
from fairgate.scheduler.stats import SchedulerStats, snapshot
from fairgate.scheduler.tenants import TenantBook
from fairgate.scheduler.vtc import VTC


class Scheduler:
    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config if config is not None else SchedulerConfig()
        self._tenants = TenantBook()
        self._router = _make_router(self.config, self._tenants)
        self._replicas: dict[str, Replica] = {}
        self._jobs: dict[str, JobRecord] = {}
        self._failed: list[str] = []
        self._retry = RetryAfter()
        self._cluster_ledger = Ledger()
        self._anticipation = Anticipation(self.config.anticipation_s)
        self._charging = Charging(self.config, self._tenants, self._router, self._replicas)
        self._seq = 0
        self._routed = 0
        self._admitted = 0

    # -- tenants and replicas --------------------------------------------------------------
    def set_tenant(self, name: str, weight: float) -> None:
        self._tenants.set_weight(name, weight)

    def add_replica(self, replica_id: str, model: str, cache_tokens: int | None = None) -> None:
        if replica_id in self._replicas:
            raise DuplicateReplica(replica_id)
        budget = self.config.cache_tokens_per_replica if cache_tokens is None else cache_tokens
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise InvalidInput(f"cache_tokens must be an integer >= 0, got {budget!r}")
        tree = RadixTree(budget)
        self._replicas[replica_id] = Replica(
            replica_id, model, tree, self._make_policy(tree), self.config.inflight_initial
        )
        self._cluster_ledger.shared = len(self._replicas) > 1
        self._rescue(model)

    def remove_replica(self, replica_id: str, now: float) -> list[str]:
        """Forget a replica. Its queued jobs are re-routed to the model's other healthy
        replicas; those with nowhere to go fail (see ``take_failed``). Returns the ids of all
        jobs that were queued there. Jobs running there stay known until finished or cancelled.
        """
        replica = self._replica(replica_id)
        queued = self._queued_on(replica)
        for record in queued:  # through the policy, so shared fairness accounts stay right
            replica.queue.remove(record.job_id)
        replica.holds.clear()
        for tenant in replica.inflight.values():
            replica.queue.ended(tenant)
        del self._replicas[replica_id]
        self._cluster_ledger.shared = len(self._replicas) > 1
        self._router.forget(replica_id)
        for record in queued:
            self._reroute(record, stay=None)
        return [record.job_id for record in queued]

    def set_replica_health(self, replica_id: str, healthy: bool, now: float) -> None:
        """An unhealthy replica is neither routed to nor admits; its queued jobs move to healthy
        replicas of the model when there are any, else wait for it to recover."""
        replica = self._replica(replica_id)
        if replica.healthy == healthy:
            return
        replica.healthy = healthy
        if healthy:
            self._rescue(replica.model)
        else:
            for record in self._queued_on(replica):
                self._reroute(record, stay=replica)

    def set_inflight_limit(self, replica_id: str, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"inflight limit must be an integer >= 1, got {limit!r}")
        self._replica(replica_id).inflight_limit = limit

    # -- the job lifecycle -----------------------------------------------------------------
    def arrive(self, job: Job, now: float) -> str:
        """Queue ``job`` on a replica chosen by the router; return that replica's id."""
        if job.job_id in self._jobs:
            raise DuplicateJob(job.job_id)
        account = self._tenants.account(job.tenant)
        if account.queued >= self.config.max_queued_per_tenant:
            raise QueueFull(job.tenant, self._retry.estimate())
        candidates = self._candidates(job, avoid=None)
        if not candidates:
            raise NoReplica(job.model)
        replica, cached = self._route(job, candidates)
        self._seq += 1
        record = JobRecord(job, self._seq, replica.replica_id, now, cached)
        self._jobs[job.job_id] = record
        account.queued += 1
        self._enqueue(record, replica)
        return replica.replica_id

    def admit(self, now: float) -> list[Dispatch]:
        """Every job that may start now: each healthy replica fills its free slots from its
        local queue, in replica order."""
        started: list[Dispatch] = []
        for replica in self._replicas.values():
            self._anticipation.expire(replica, now)
            if not replica.healthy:
                continue
            while len(replica.inflight) + self._anticipation.held(replica) < replica.inflight_limit:
                record = replica.queue.pop_next()
                if record is None:
                    break
                self._start(record, replica, now)
                started.append(Dispatch(record.job_id, replica.replica_id))
        return started

    def first_token(self, job_id: str, cached_tokens: int | None, now: float) -> None:
        """The engine produced the job's first token and (if known) reported how many prompt
        tokens it found cached: replace the predicted prompt charge with the real one."""
        record = self._job(job_id)
        if cached_tokens is not None and (
            isinstance(cached_tokens, bool)
            or not isinstance(cached_tokens, int)
            or cached_tokens < 0
        ):
            raise InvalidInput(f"cached_tokens must be an integer >= 0, got {cached_tokens!r}")
        record.see_first_token()
        if cached_tokens is None:
            return
        prompt_len = len(record.job.prompt)
        actual = min(cached_tokens, prompt_len)  # an engine counting whole blocks may overshoot
        self._charging.first_token(record, actual)
        replica = self._replicas.get(record.replica_id)
        if replica is not None:
            replica.reported_prompt_tokens += prompt_len
            replica.cached_tokens += actual

    def tokens(self, job_id: str, n: int, now: float) -> None:
        """``n`` more generated tokens (visible and hidden)."""
        record = self._job(job_id)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidInput(f"token count must be an integer >= 0, got {n!r}")
        before = record.generated
        record.generate(n)
        self._charging.generated(record, n, before)

    def finish(self, job_id: str, now: float) -> None:
        record = self._job(job_id)
        record.finish()
        if record.dispatched_at is not None:
            self._retry.observe(now - record.dispatched_at)
        self._tenants.observe_output(
            record.tenant, record.generated, self.config.output_estimate_alpha
        )
        replica = self._replicas.get(record.replica_id)
        self._release(record)
        if replica is not None:
            self._anticipation.ended(replica, record.tenant, now)

    def next_hold_expiry(self, now: float) -> float | None:
        """When the earliest slot held at ``now`` is given up (``anticipation_s``), if any:
        ``admit`` should run again then."""
        return self._anticipation.next_expiry(list(self._replicas.values()), now)

    def cancel(self, job_id: str, now: float) -> None:
        """Drop a queued or running job (a running one frees its slot; its service so far
        stays charged). Raises UnknownJob for ids not held, e.g. a second cancel."""
        record = self._job(job_id)
        if record.state is JobState.QUEUED:
            self._unqueue(record)
            del self._jobs[job_id]
            self._tenants.account(record.tenant).queued -= 1
        else:
            self._release(record)

    def take_failed(self) -> list[str]:
        """Ids of queued jobs dropped since the last call because their replica was removed
        and no other replica could take them; the gateway answers them with 503."""
        failed, self._failed = self._failed, []
        return failed

    def replica_of(self, job_id: str) -> str:
        """The replica a queued or running job is on (changes when a job is re-routed)."""
        return self._job(job_id).replica_id

    # -- observation -----------------------------------------------------------------------
    def stats(self) -> SchedulerStats:
        return snapshot(
            list(self._replicas.values()), self._tenants, self._router, self._routed, self._admitted
        )

    # -- internals -------------------------------------------------------------------------
    def _make_policy(self, tree: RadixTree) -> LocalPolicy:
        match self.config.policy_kind:
            case Policy.FCFS:
                return FCFS(self._tenants)
            case Policy.VTC | Policy.VTC_DISCOUNTED:
                return VTC(self._tenants, self._ledger())
            case Policy.LPM:
                return LPM(self._tenants, tree)
            case Policy.DLPM:
                return DLPM(
                    self._tenants,
                    self._ledger(),
                    tree,
                    self.config.quantum,
                    self.config.locality_slack,
                    quantum_jobs=self.config.quantum_jobs,
                    tolerance=self.config.locality_tolerance,
                    prompt_weight=self.config.prompt_weight,
                )

    def _ledger(self) -> Ledger:
        if self.config.fairness_scope == "cluster":
            return self._cluster_ledger
        return Ledger()

    def _replica(self, replica_id: str) -> Replica:
        replica = self._replicas.get(replica_id)
        if replica is None:
            raise UnknownReplica(replica_id)
        return replica

    def _job(self, job_id: str) -> JobRecord:
        record = self._jobs.get(job_id)
        if record is None:
            raise UnknownJob(job_id)
        return record

    def _candidates(self, job: Job, avoid: Replica | None, healthy: bool = True) -> list[Replica]:
        return [
            r
            for r in self._replicas.values()
            if r.model == job.model
            and r.healthy is healthy
            and r is not avoid
            and r.replica_id not in job.exclude
        ]

    def _route(self, job: Job, candidates: list[Replica]) -> tuple[Replica, int]:
        cfg = self.config
        expected = self._tenants.expected_output(job.tenant, job.max_tokens)
        miss = len(job.prompt) * cfg.prompt_weight + expected * cfg.completion_weight
        self._tenants.observe_job(job.tenant, miss, cfg.output_estimate_alpha)
        replica = self._router.route(job, candidates)
        self._routed += 1
        return replica, replica.prefix_match(job)

    def _enqueue(self, record: JobRecord, replica: Replica) -> None:
        self._charging.routed(record)
        record.load = record.expected_work
        replica.outstanding += record.load
        replica.add_queued(record.tenant, record.load)
        replica.queue.push(record)
        self._anticipation.arrived(replica, record.tenant)

    def _unqueue(self, record: JobRecord) -> None:
        replica = self._replicas.get(record.replica_id)
        if replica is not None:
            if record.job_id in replica.queue:
                replica.queue.remove(record.job_id)
                replica.add_queued(record.tenant, -record.load)
            replica.outstanding = max(0.0, replica.outstanding - record.load)
        self._charging.unrouted(record)

    def _reroute(self, record: JobRecord, stay: Replica | None) -> None:
        """Move a queued job off its replica; if no other can take it, it stays on ``stay``.
        When ``stay`` is None (its replica is gone), a job with no healthy replica left waits
        on an unhealthy one of its model, as it would have on its own; it fails only when
        the model has no other replica it may use."""
        candidates = self._candidates(record.job, avoid=stay)
        if not candidates and stay is not None:
            return
        if not candidates:
            candidates = self._candidates(record.job, avoid=None, healthy=False)
        self._unqueue(record)
        if candidates:
            replica, cached = self._route(record.job, candidates)
            record.move(replica.replica_id, cached)
            self._enqueue(record, replica)
            return
        record.fail()
        del self._jobs[record.job_id]
        self._tenants.account(record.tenant).queued -= 1
        self._failed.append(record.job_id)

    def _rescue(self, model: str) -> None:
        """Jobs waiting on unhealthy replicas of ``model`` move to healthy ones, if any."""
        for replica in list(self._replicas.values()):
            if replica.model == model and not replica.healthy:
                for record in self._queued_on(replica):
                    self._reroute(record, stay=replica)

    def _queued_on(self, replica: Replica) -> list[JobRecord]:
        """Queued jobs of ``replica`` in arrival order (O(jobs): only on replica events)."""
        return [
            r
            for r in self._jobs.values()
            if r.state is JobState.QUEUED and r.replica_id == replica.replica_id
        ]

    def _start(self, record: JobRecord, replica: Replica, now: float) -> None:
        job = record.job
        prompt_len = len(job.prompt)
        hit = billable_hit(prompt_len, replica.tree.insert(job.cache_key, job.prompt))
        record.start(now, hit)
        replica.add_queued(job.tenant, -record.load)
        replica.inflight[job.job_id] = job.tenant
        replica.prompt_tokens += prompt_len
        replica.predicted_hit_tokens += hit
        account = self._tenants.account(job.tenant)
        account.queued -= 1
        account.inflight += 1
        self._charging.admitted(record, replica, hit)
        self._admitted += 1

    def _release(self, record: JobRecord) -> None:
        """A running job ended: settle its charges, free its slot, forget it."""
        self._charging.ended(record)
        replica = self._replicas.get(record.replica_id)
        if replica is not None:
            if replica.inflight.pop(record.job_id, None) is not None:
                replica.queue.ended(record.tenant)
            replica.outstanding = max(0.0, replica.outstanding - record.load)
        self._tenants.account(record.tenant).inflight -= 1
        del self._jobs[record.job_id]


def _make_router(config: SchedulerConfig, tenants: TenantBook) -> Router:
    match config.router_kind:
        case RouterKind.ROUND_ROBIN:
            return RoundRobin(config, tenants)
        case RouterKind.LEAST_LOAD:
            return LeastLoad(config, tenants)
        case RouterKind.LPM | RouterKind.CACHE_AWARE:
            return LongestPrefix(config, tenants)
        case RouterKind.PREBLE:
            return Preble(config, tenants)
        case RouterKind.D2LPM:
            return D2LPM(config, tenants)
