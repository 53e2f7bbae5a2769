"""A tenant's controls on one request, in the order they apply before dispatch:

    max_tokens ceiling → prompt guard → engine reasoning budget → limits (counters)

and after it: the limits settle on the real usage. The HTTP layer calls ``admit`` once, after
validation and tokenization; a refusal is an ``APIError`` that the caller records in the
ledger like any other. ``reasoning_budget`` is what the generation's meter enforces.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairgate.gateway import guards, prompt_guard
from fairgate.gateway.config import Config, TenantConfig
from fairgate.gateway.limits import TenantLimitsGate
from fairgate.metering.pricing import PriceTable
from fairgate.metering.usage import Usage

if TYPE_CHECKING:
    from fairgate.gateway.replica_set import ModelRuntime


class TenantControls:
    def __init__(
        self, tenants: Iterable[TenantConfig], gate: TenantLimitsGate, config: Config
    ) -> None:
        self._tenants = {t.name: t for t in tenants}
        self.gate = gate
        self.queue_timeout_s = config.guards.queue_timeout_s
        self.stall_timeout_s = config.guards.stall_timeout_s
        self.keepalive_s = config.guards.keepalive_s

    @classmethod
    def for_config(cls, config: Config, prices: PriceTable) -> TenantControls:
        gate = TenantLimitsGate.for_config(
            _limits(config.tenants), prices, config.ledger.url, Path(config.data_dir)
        )
        return cls(config.tenants, gate, config)

    def update(self, config: Config) -> None:
        """Apply a reloaded configuration's tenants and guards."""
        self._tenants = {t.name: t for t in config.tenants}
        self.gate.update(_limits(config.tenants))
        self.queue_timeout_s = config.guards.queue_timeout_s
        self.stall_timeout_s = config.guards.stall_timeout_s
        self.keepalive_s = config.guards.keepalive_s

    def tenant(self, name: str) -> TenantConfig | None:
        return self._tenants.get(name)

    def reasoning_budget(self, tenant: str) -> int | None:
        config = self._tenants.get(tenant)
        return None if config is None else config.max_reasoning_tokens

    async def admit(
        self,
        tenant: str,
        request_id: str,
        model: ModelRuntime,
        body: dict[str, Any],
        prompt_ids: tuple[int, ...],
    ) -> None:
        """Check (and adjust) ``body`` for the tenant; take its limits' holds."""
        config = self._tenants.get(tenant)
        if config is None:
            return
        if config.limits is not None and config.limits.max_tokens is not None:
            guards.apply_max_tokens_ceiling(config.limits.max_tokens, model, body, len(prompt_ids))
        if config.prompt_guard is not None:
            prompt_guard.check(
                config.prompt_guard.min_chars_per_token, body, model.tokenizer.encode
            )
        guards.engine_reasoning_budget(config, model, body)
        requested = guards.requested_max_tokens(body)
        max_tokens = requested or model.default_max_tokens
        # Unset, an engine may generate up to its context: a budget must hold that much.
        room = model.max_model_len - len(prompt_ids) if model.max_model_len else max_tokens
        most = requested or max(1, room)
        await self.gate.admit(tenant, request_id, model.name, len(prompt_ids), max_tokens, most)

    async def settle(self, request_id: str, usage: Usage) -> None:
        await self.gate.settle(request_id, usage)

    def close(self) -> None:
        self.gate.close()


def _limits(tenants: Iterable[TenantConfig]) -> dict[str, Any]:
    return {t.name: t.limits for t in tenants if t.limits is not None}
