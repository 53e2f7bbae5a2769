"""Per-tenant limits: requests and tokens per minute, concurrency, and a spend budget.

Admission is decided on an estimate before dispatch: the prompt's tokens plus the request's
``max_tokens`` (the model's default when unset), and for a budget the most the request could
cost: ``max_tokens`` or, unset, all the context left where the model's length is known, each
token at the dearer of the completion and reasoning prices. Settlement
replaces the estimate with the real usage and cost once the request has ended, however it
ended. A refusal is a 429 whose ``code`` names the limit and whose ``Retry-After`` says when
the oldest hold leaves the window (or the budget's period ends).

The counters live in a ``limit_store`` next to the ledger, so gateways sharing a PostgreSQL
ledger share them too. Tenants without limits never touch the store.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from fairgate.gateway.config import Budget, TenantLimits
from fairgate.gateway.errors import RateLimited, Unavailable
from fairgate.gateway.limit_store import (
    LEASE_S,
    WINDOW_S,
    Ask,
    LimitStore,
    LimitStoreError,
    Refusal,
    Settlement,
    open_limit_store,
)
from fairgate.metering.pricing import PriceTable
from fairgate.metering.usage import Usage

log = logging.getLogger("fairgate.limits")
STALE_CHECK = 4096  # admitted requests in flight before old entries are looked for
STALE_S = 3600.0  # admitted this long ago and never settled: it never ran
RENEW_S = 30.0  # how often the leases of running requests are renewed (< LEASE_S)

CODES = {
    "requests": "rate_limit_requests_per_minute",
    "tokens": "rate_limit_tokens_per_minute",
    "concurrent": "rate_limit_max_concurrent",
    "spend": "budget_exceeded",
}


class LimitRefused(RateLimited):
    """429 for one named limit."""


class LimitStoreUnavailable(Unavailable):
    code = "limit_store_unavailable"


def period_of(budget: Budget, now: float) -> tuple[str, float]:
    """The budget's current period (its key) and when it ends, in UTC."""
    at = datetime.fromtimestamp(now, UTC)
    if budget.period == "hour":
        start = at.replace(minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%dT%H"), start.timestamp() + 3600
    if budget.period == "day":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start.timestamp() + 86400
    days = calendar.monthrange(at.year, at.month)[1]
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m"), start.timestamp() + days * 86400


@dataclass(frozen=True, slots=True)
class Held:
    """What one admitted request holds, to settle when it ends."""

    tenant: str
    model: str
    tokens: int | None  # the estimate counted at admission, under a tokens limit
    period: str | None
    at: float


class TenantLimitsGate:
    def __init__(
        self,
        limits: Mapping[str, TenantLimits],
        prices: PriceTable,
        open_store: Callable[[], LimitStore],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = dict(limits)
        self._prices = prices
        self._open_store = open_store
        self._store: LimitStore | None = None
        self._clock = clock
        self._held: dict[str, Held] = {}
        self._renewal: asyncio.Task[None] | None = None

    @classmethod
    def for_config(
        cls, limits: Mapping[str, TenantLimits], prices: PriceTable, ledger_url: str | None,
        data_dir: Path,
    ) -> TenantLimitsGate:  # fmt: skip
        return cls(limits, prices, lambda: open_limit_store(ledger_url, data_dir))

    def update(self, limits: Mapping[str, TenantLimits]) -> None:
        """New limits (a reload); requests already admitted settle as they were admitted."""
        self._limits = dict(limits)

    def limits(self, tenant: str) -> TenantLimits | None:
        return self._limits.get(tenant)

    def _store_now(self) -> LimitStore:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def asks(
        self,
        limits: TenantLimits,
        model: str,
        prompt_tokens: int,
        max_tokens: int,
        now: float,
        most_tokens: int | None = None,
    ) -> tuple[list[Ask], str | None]:
        asks: list[Ask] = []
        if limits.requests_per_minute is not None:
            asks.append(Ask("requests", Decimal(1), Decimal(limits.requests_per_minute), WINDOW_S))
        if limits.tokens_per_minute is not None:
            estimate = Decimal(prompt_tokens + max_tokens)
            asks.append(Ask("tokens", estimate, Decimal(limits.tokens_per_minute), WINDOW_S))
        if limits.max_concurrent is not None:
            asks.append(Ask("concurrent", Decimal(1), Decimal(limits.max_concurrent), LEASE_S))
        period = None
        if limits.budget is not None:
            period, end = period_of(limits.budget, now)
            cost = self._most_cost(model, prompt_tokens, most_tokens or max_tokens)
            asks.append(Ask("spend", cost, limits.budget.amount, LEASE_S, period, end))
        return asks, period

    def _most_cost(self, model: str, prompt_tokens: int, max_tokens: int) -> Decimal:
        as_text = self._prices.cost(model, Usage(prompt_tokens, 0, max_tokens, 0))
        as_reasoning = self._prices.cost(model, Usage(prompt_tokens, 0, max_tokens, max_tokens))
        if as_text is None or as_reasoning is None:
            return Decimal(0)  # an unpriced model costs nothing against a budget
        return max(as_text.total, as_reasoning.total)

    async def admit(
        self,
        tenant: str,
        request_id: str,
        model: str,
        prompt_tokens: int,
        max_tokens: int,
        most_tokens: int | None = None,
    ) -> None:
        """Take the request's holds, or raise the 429 of the first limit it does not fit.
        ``most_tokens``: the most it may generate (a budget's bound), else ``max_tokens``."""
        limits = self._limits.get(tenant)
        if limits is None:
            return
        now = self._clock()
        asks, period = self.asks(limits, model, prompt_tokens, max_tokens, now, most_tokens)
        if not asks:
            return
        try:
            store = self._store_now()
            refusal = await asyncio.to_thread(store.reserve, tenant, request_id, asks, now)
        except LimitStoreError as error:
            log.error("limits of tenant %s cannot be checked: %s", tenant, error)
            raise LimitStoreUnavailable(
                "The tenant's limits cannot be checked right now; retry later."
            ) from None
        if refusal is not None:
            raise refused(tenant, limits, refusal)
        estimate = prompt_tokens + max_tokens if limits.tokens_per_minute is not None else None
        self._forget_stale(now)
        self._held[request_id] = Held(tenant, model, estimate, period, now)
        if self._renewal is None or self._renewal.done():
            self._renewal = asyncio.get_running_loop().create_task(self._renew_leases())

    async def _renew_leases(self) -> None:
        """Keep the leases of this gateway's running requests alive; a gateway that dies
        stops renewing, and its tenants get their concurrency and budget back."""
        while self._held:
            await asyncio.sleep(RENEW_S)
            ids = list(self._held)
            try:
                store = self._store_now()
                await asyncio.to_thread(store.renew, ids, self._clock() + LEASE_S)
            except Exception:
                log.exception("renewing %d limit leases failed", len(ids))

    def _forget_stale(self, now: float) -> None:
        """A request admitted but never run (its client left first) is never settled; its
        store holds end with their lease, and so does its entry here."""
        if len(self._held) < STALE_CHECK:
            return
        for request_id, held in list(self._held.items()):
            if now - held.at > STALE_S:
                del self._held[request_id]

    async def settle(self, request_id: str, usage: Usage) -> None:
        """Count the real usage of an admitted request; a no-op for any other request."""
        held = self._held.pop(request_id, None)
        if held is None:
            return
        cost = None
        if held.period is not None:
            priced = self._prices.cost(held.model, usage)
            cost = priced.total if priced is not None else Decimal(0)
        tokens = None if held.tokens is None else usage.prompt_tokens + usage.completion_tokens
        settlement = Settlement(
            request_id, held.tenant, tokens, cost, held.period or "", held.tokens or 0, held.at
        )
        try:
            await asyncio.to_thread(self._store_now().settle, settlement, self._clock())
        except Exception:  # the record must still be written; the holds run out with their lease
            log.exception("settling %s in the limit store failed", request_id)

    def spent(self, tenant: str) -> Decimal | None:
        limits = self._limits.get(tenant)
        if limits is None or limits.budget is None:
            return None
        period, _ = period_of(limits.budget, self._clock())
        return self._store_now().spent(tenant, period)

    def close(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
        if self._store is not None:
            self._store.close()
            self._store = None


def refused(tenant: str, limits: TenantLimits, refusal: Refusal) -> LimitRefused:
    code = CODES[refusal.kind]
    retry = f"Retry after {refusal.retry_after} s."
    if refusal.kind == "spend" and limits.budget is not None:
        budget = limits.budget
        message = (
            f"Budget exceeded for tenant '{tenant}': budget is {budget.amount} per "
            f"{budget.period}, {refusal.used} spent or held. {retry}"
        )
    elif refusal.kind == "concurrent":
        message = (
            f"Rate limit reached for tenant '{tenant}' on max_concurrent: limit "
            f"{refusal.limit}, {refusal.used} requests in flight. {retry}"
        )
    else:
        name = code.removeprefix("rate_limit_")
        unit = "requests" if refusal.kind == "requests" else "tokens"
        message = (
            f"Rate limit reached for tenant '{tenant}' on {name}: limit {refusal.limit}, "
            f"{refusal.used} {unit} used in the last 60 s. {retry}"
        )
    return LimitRefused(message, code=code, headers={"Retry-After": str(refusal.retry_after)})
