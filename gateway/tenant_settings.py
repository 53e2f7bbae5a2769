"""Tenant settings made through the admin API (``PATCH /admin/tenants/{name}``): a weight,
limits and a reasoning budget that take effect for the next request and survive restarts.

They are kept in ``data_dir/tenant_settings.json`` and laid over the configuration file's
tenants at start and after every reload: a setting made here wins over the file's until it is
cleared (``DELETE /admin/tenants/{name}/settings``). A tenant known only by its API keys gets an
entry of its own. Like ``api_keys.json``, the file belongs to one gateway's data directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fairgate.gateway.config import TenantConfig, TenantLimits

SETTINGS_FILE = "tenant_settings.json"


class TenantSettings(BaseModel):
    """The fields an operator may set; those left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(default=1.0, gt=0)
    limits: TenantLimits | None = None  # null: no limits
    max_reasoning_tokens: int | None = Field(default=None, ge=0)  # null: no budget


class TenantSettingsStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / SETTINGS_FILE

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {str(name): dict(fields) for name, fields in data.items()}

    def set(self, name: str, settings: TenantSettings) -> dict[str, Any]:
        """Merge the fields ``settings`` names into the tenant's; return its settings."""
        every = self.load()
        fields = every.get(name, {})
        fields.update(settings.model_dump(mode="json", exclude_unset=True))
        every[name] = fields
        self._write(every)
        return fields

    def clear(self, name: str) -> bool:
        every = self.load()
        if every.pop(name, None) is None:
            return False
        self._write(every)
        return True

    def apply(self, tenants: Iterable[TenantConfig]) -> list[TenantConfig]:
        """The file's tenants with these settings laid over them."""
        every = self.load()
        applied = [t.model_copy(update=_fields(every.pop(t.name, {}))) for t in tenants]
        applied += [TenantConfig(name=name, **_fields(fields)) for name, fields in every.items()]
        return applied

    def _write(self, every: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(every, indent=2, sort_keys=True))
        os.replace(partial, self.path)  # a crash leaves the old file or the new, never half


def _fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Stored JSON back to typed values (``limits`` as ``TenantLimits``)."""
    typed = dict(fields)
    if typed.get("limits") is not None:
        typed["limits"] = TenantLimits.model_validate(typed["limits"])
    return typed
