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


class TenantBook:
    """Every tenant the scheduler has seen; unknown tenants join with weight 1."""

    def __init__(self) -> None:
        self._accounts: dict[str, TenantAccount] = {}

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

    def __iter__(self) -> Iterator[TenantAccount]:
        return iter(self._accounts.values())
