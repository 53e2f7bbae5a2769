"""Tenants: their weights and the running totals the scheduler reports for them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from fairgate.scheduler.errors import InvalidInput


@dataclass(slots=True)
class TenantAccount:
    """One tenant. ``served`` is weighted service: uncached prompt * w_p + generated * w_q."""

    name: str
    weight: float = 1.0
    queued: int = 0
    inflight: int = 0
    served: float = 0.0
    average_output: float | None = None  # generated tokens per finished job, moving average
    job_work: float | None = None  # expected work of a job with its prompt uncached, average

    def observe_output(self, generated: int, alpha: float) -> None:
        if self.average_output is None:
            self.average_output = float(generated)
        else:
            self.average_output += alpha * (generated - self.average_output)

    def expected_output(self, max_tokens: int, prior: float | None = None) -> int:
        """What a new job of this tenant will generate: its recent average, at most
        ``max_tokens``; until one of its jobs has finished, ``prior`` (what other tenants'
        jobs generate), or ``max_tokens`` when nothing has finished anywhere. A default
        ``max_tokens`` is usually far above the answer, and every overestimate is refunded
        later as credit the order did not account for."""
        average = self.average_output if self.average_output is not None else prior
        if average is None:
            return max_tokens
        estimate = math.ceil(average)
        return min(estimate, max_tokens) if max_tokens > 0 else estimate


class TenantBook:
    """Every tenant the scheduler has seen; unknown tenants join with weight 1."""

    def __init__(self) -> None:
        self._accounts: dict[str, TenantAccount] = {}
        self.output_prior: float | None = None  # every finished job's output, moving average

    def account(self, name: str) -> TenantAccount:
        account = self._accounts.get(name)
        if account is None:
            account = TenantAccount(name)
            self._accounts[name] = account
        return account

    def weight(self, name: str) -> float:
        account = self._accounts.get(name)
        return 1.0 if account is None else account.weight

    def set_weight(self, name: str, weight: float) -> None:
        if not name:
            raise InvalidInput("tenant name must be a non-empty string")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise InvalidInput(
                f"tenant {name!r}: weight must be a finite number > 0, got {weight!r}"
            )
        self.account(name).weight = float(weight)

    def observe_job(self, name: str, work: float, alpha: float) -> None:
        """A job of ``name`` arrived whose expected work, its prompt uncached, is ``work``."""
        account = self.account(name)
        last = account.job_work
        account.job_work = work if last is None else last + alpha * (work - last)

    def typical_job(self) -> float:
        """The median tenant's typical job (``observe_job``): what one miss costs. The median,
        so that one tenant's huge prompts (misbehaving S2) do not set everyone's quanta."""
        works = sorted(a.job_work for a in self._accounts.values() if a.job_work is not None)
        return works[len(works) // 2] if works else 0.0

    def observe_output(self, name: str, generated: int, alpha: float) -> None:
        """A job of ``name`` finished having generated ``generated`` tokens."""
        self.account(name).observe_output(generated, alpha)
        if self.output_prior is None:
            self.output_prior = float(generated)
        else:
            self.output_prior += alpha * (generated - self.output_prior)

    def expected_output(self, name: str, max_tokens: int) -> int:
        return self.account(name).expected_output(max_tokens, self.output_prior)

    def knows_output(self) -> bool:
        """Whether ``expected_output`` is a measured estimate rather than ``max_tokens``."""
        return self.output_prior is not None

    def __iter__(self) -> Iterator[TenantAccount]:
        return iter(self._accounts.values())
