"""Fairness accounts: per-tenant VTC counters and DLPM deficits, and who is backlogged.

A ledger covers a *scope*: the jobs queued under it and the service charged to it.

- ``replica`` scope (the papers' setting): every replica's local policy keeps its own ledger,
  so fairness holds per replica and D²LPM's routing spreads tenants over replicas.
- ``cluster`` scope (the default): all replicas' local policies share one ledger. A tenant's
  service on any replica counts on every replica, and a refill triggered on one replica
  credits every backlogged tenant of the cluster, so a tenant that found few free slots where
  its jobs were queued is paid back wherever it next competes (no further than two quanta:
  ``dlpm.DLPM._refill``). With one replica both
  scopes are identical.
"""

from __future__ import annotations


class Ledger:
    def __init__(self) -> None:
        self.counters: dict[str, float] = {}
        self.deficits: dict[str, float] = {}
        self._queued: dict[str, int] = {}  # backlogged tenants, in the order they became so
        self.shared = False  # drawn on by more than one replica (cluster scope)

    def enter(self, tenant: str) -> bool:
        """One more queued job of ``tenant``; True when it was not backlogged before."""
        n = self._queued.get(tenant, 0)
        self._queued[tenant] = n + 1
        return n == 0

    def leave(self, tenant: str) -> bool:
        """One queued job of ``tenant`` fewer; True when it is no longer backlogged."""
        n = self._queued[tenant] - 1
        if n:
            self._queued[tenant] = n
            return False
        del self._queued[tenant]
        return True

    def backlogged(self) -> list[str]:
        return list(self._queued)

    def is_backlogged(self, tenant: str) -> bool:
        return tenant in self._queued
