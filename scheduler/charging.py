"""Charging: which account is charged what for a job, and when it is settled.

A job's service is (prompt - cached) * w_p + cached * w_c + generated * w_q. The router's
account (D²LPM) is charged the job's *expected* work at routing: its prompt with the prefix
the replica held then, plus its expected output (the tenant's recent average, at most
``max_tokens``); it is settled when the job ends (prompt: at the engine's real cached count;
output: at what was generated). The local policy's account is charged the prompt at admission
with the prefix the replica holds then (it was just inserted for this job), corrected by the
engine's count, and generated tokens as they stream. DLPM (``charges_ahead``) is charged the
expected output at admission once any job has finished (so the estimate is a measured
average, not ``max_tokens``), tokens past it as they stream, and the unused rest is refunded
at the end: its order then counts the work it has started, not only the tokens streamed so
far (measured: a flood's admitted jobs otherwise looked cheap for their whole run).
OSDI'24 VTC (``vtc``) charges cached prompt tokens like uncached ones. A predicted hit never
covers the last prompt token: engines recompute it to produce the first output token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fairgate.scheduler.config import Policy, SchedulerConfig
from fairgate.scheduler.job import JobRecord
from fairgate.scheduler.replica import Replica
from fairgate.scheduler.router import Router
from fairgate.scheduler.tenants import TenantBook


def billable_hit(prompt_len: int, cached: int) -> int:
    """A cached prefix never covers the last prompt token: the engine recomputes it."""
    return max(0, min(cached, prompt_len - 1))


@dataclass(slots=True, eq=False)
class Charging:
    """Charges jobs to the tenants' accounts, the router's and each replica's local policy.

    ``replicas`` is the scheduler's own mapping, read live: a job whose replica was removed
    charges no replica account, because that replica's accounts are gone with it.
    """

    config: SchedulerConfig
    tenants: TenantBook
    router: Router
    replicas: Mapping[str, Replica]

    def routed(self, record: JobRecord) -> None:
        """The job was queued on ``record.replica_id``: charge the router its expected work."""
        cfg = self.config
        prompt_len = len(record.job.prompt)
        hit = billable_hit(prompt_len, record.routed_cached)
        record.expected_output = self.tenants.expected_output(record.tenant, record.job.max_tokens)
        record.expected_work = (
            (prompt_len - hit) * cfg.prompt_weight
            + hit * cfg.cached_prompt_weight
            + record.expected_output * cfg.completion_weight
        )
        self._router(record, record.expected_work)

    def unrouted(self, record: JobRecord) -> None:
        """The job left its queue without running: refund the router's charge."""
        self._router(record, -record.expected_work)

    def admitted(self, record: JobRecord, replica: Replica, hit: int) -> None:
        """The job started with ``hit`` billable prompt tokens cached on ``replica``."""
        job = record.job
        cfg = self.config
        prompt_len = len(job.prompt)
        charge = (prompt_len - hit) * cfg.prompt_weight + hit * self._local_cached_weight()
        self._local(record, charge)
        if replica.queue.charges_ahead and self.tenants.knows_output():
            record.charged_ahead = self.tenants.expected_output(job.tenant, job.max_tokens)
            self._policy(record, record.charged_ahead * cfg.completion_weight)

    def first_token(self, record: JobRecord, actual: int) -> None:
        """The engine found ``actual`` prompt tokens cached: replace both predicted charges."""
        cfg = self.config
        discount = cfg.prompt_weight - self._local_cached_weight()
        self._local(record, (record.predicted_cached - actual) * discount)
        routed = billable_hit(len(record.job.prompt), record.routed_cached)
        settle = (routed - actual) * (cfg.prompt_weight - cfg.cached_prompt_weight)
        self._router(record, settle)
        record.expected_work += settle

    def generated(self, record: JobRecord, n: int, before: int) -> None:
        """``n`` tokens streamed after ``before``; the policy pays only past its charge ahead."""
        weight = self.config.completion_weight
        self.tenants.account(record.tenant).served += n * weight
        beyond = record.generated - max(before, record.charged_ahead)
        if beyond > 0:
            self._policy(record, beyond * weight)

    def ended(self, record: JobRecord) -> None:
        """A running job ended: settle the expected output charged ahead against what it
        made (the router's account, and the local policy's if it charges ahead)."""
        weight = self.config.completion_weight
        self._router(record, (record.generated - record.expected_output) * weight)
        unused = record.charged_ahead - record.generated
        if unused > 0:
            self._policy(record, -unused * weight)

    def _local_cached_weight(self) -> float:
        if self.config.policy_kind is Policy.VTC:  # OSDI'24: the whole prompt is input
            return self.config.prompt_weight
        return self.config.cached_prompt_weight

    def _local(self, record: JobRecord, amount: float) -> None:
        self.tenants.account(record.tenant).served += amount
        self._policy(record, amount)

    def _policy(self, record: JobRecord, amount: float) -> None:
        replica = self.replicas.get(record.replica_id)
        if replica is not None:
            replica.queue.charge(record.tenant, amount)

    def _router(self, record: JobRecord, amount: float) -> None:
        if record.replica_id in self.replicas:  # a removed replica's accounts are gone
            self.router.charge(record.tenant, record.replica_id, amount)
