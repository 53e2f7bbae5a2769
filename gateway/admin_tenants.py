"""Operator endpoints for tenants and their keys, behind the admin key.

    GET    /admin/tenants      every tenant: weight, limits, reasoning budget, prompt guard,
                               key ids, and the budget spent this period
    PATCH  /admin/tenants/{name}
                               {"weight"?, "limits"?, "max_reasoning_tokens"?}: set them, for
                               the next request and across restarts (``tenant_settings``)
    DELETE /admin/tenants/{name}/settings
                               drop those settings: the configuration file's apply again
    POST   /admin/keys         {"tenant", "weight"?}: a new key, shown in this answer only
                               (stored as its SHA-256 digest)
    DELETE /admin/keys/{id}    revoke a key; the next request with it gets a 401

Every admin action, these and ``/admin/replicas`` and ``/admin/reload``, is a ledger record
(``status`` ``admin_<action>``, no usage): the ledger is also the operators' audit trail. A key
action is recorded under the key's tenant, the others under ``@admin``, which no tenant can
be named (tenant names have no ``@``).

With a PostgreSQL ledger the keys made here are shared by every gateway on it
(``shared_keys``); otherwise they go to ``data_dir/api_keys.json``. Keys in the configuration
file (``tenants[].api_keys``) are the file's: listed, and revoked by editing the file and
reloading, not here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fairgate.gateway.admin import record_action, require_admin
from fairgate.gateway.auth import KeyStore, StoredKey, Tenant, digest, key_id, new_key
from fairgate.gateway.errors import APIError, InvalidRequest, RecordNotFound, invalid_request
from fairgate.gateway.runtime import Runtime
from fairgate.gateway.tenant_settings import TenantSettings

router = APIRouter(prefix="/admin")


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    weight: float | None = Field(default=None, gt=0)


class KeyNotFound(RecordNotFound):
    code = "key_not_found"


class TenantNotFound(RecordNotFound):
    code = "tenant_not_found"


@router.get("/tenants")
async def list_tenants(request: Request) -> dict[str, Any]:
    runtime = require_admin(request)
    await record_action(runtime, request, "tenants")
    stored = _Stored.read(runtime)  # the two files once, not once per tenant
    data = [describe(runtime, name, stored) for name in sorted(runtime.tenants)]
    return {"object": "list", "data": data}


@router.patch("/tenants/{name}")
async def update_tenant(request: Request, name: str) -> dict[str, Any]:
    runtime = require_admin(request)
    try:
        _known(runtime, name)
        settings = TenantSettings.model_validate(await _json(request))
    except ValidationError as error:
        await record_action(runtime, request, "tenant_update_failed", status_code=400)
        raise invalid_request(error) from None
    except APIError as error:
        await record_action(runtime, request, "tenant_update_failed", status_code=error.status)
        raise
    await asyncio.to_thread(runtime.tenant_settings.set, name, settings)
    runtime.apply_tenant_settings()
    await record_action(runtime, request, "tenant_updated", tenant=name)
    return describe(runtime, name)


@router.delete("/tenants/{name}/settings")
async def clear_tenant_settings(request: Request, name: str) -> dict[str, Any]:
    runtime = require_admin(request)
    try:
        _known(runtime, name)
    except APIError as error:
        await record_action(runtime, request, "tenant_clear_failed", status_code=error.status)
        raise
    await asyncio.to_thread(runtime.tenant_settings.clear, name)
    runtime.apply_tenant_settings()
    await record_action(runtime, request, "tenant_settings_cleared", tenant=name)
    return describe(runtime, name)


def _known(runtime: Runtime, name: str) -> None:
    if name not in runtime.tenants:
        raise TenantNotFound(f"No tenant named '{name}'.", param="name")


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise InvalidRequest("The request body must be JSON.") from None


@router.post("/keys")
async def create_key(request: Request) -> dict[str, Any]:
    runtime = require_admin(request)
    try:
        asked = await _key_request(request)
    except APIError as error:
        await record_action(runtime, request, "key_create_failed", status_code=error.status)
        raise
    shared = runtime.shared_keys
    if shared is not None:
        key, stored = new_key(asked.tenant, asked.weight)
        await asyncio.to_thread(shared.add, stored)
        runtime.set_shared_keys(await asyncio.to_thread(shared.active))
    else:
        key, stored = KeyStore(runtime.config.data_dir).issue(asked.tenant, asked.weight)
        runtime.keyring.add(stored.sha256, stored.tenant)
        if stored.tenant not in runtime.tenants:
            runtime.tenants[stored.tenant] = Tenant(stored.tenant, asked.weight or 1.0)
            runtime.scheduler.set_tenant(stored.tenant, asked.weight or 1.0)
    await record_action(runtime, request, "key_created", tenant=stored.tenant)
    return {
        "object": "api_key",
        "id": stored.id,
        "tenant": stored.tenant,
        "key": key,
        "created_at": int(stored.created_at),
    }


@router.delete("/keys/{id_}")
async def revoke_key(request: Request, id_: str) -> dict[str, Any]:
    runtime = require_admin(request)
    revoked = await _revoke_shared(runtime, id_) or KeyStore(runtime.config.data_dir).revoke(id_)
    if revoked is None:
        error: APIError = KeyNotFound(f"No API key with id '{id_}'.", param="id")
        if id_ in _config_key_ids(runtime):
            error = InvalidRequest(
                f"Key '{id_}' is set in the configuration file: remove it there and reload.",
                param="id",
            )
        await record_action(runtime, request, "key_revoke_failed", status_code=error.status)
        raise error
    runtime.keyring.remove(revoked.sha256)
    await record_action(runtime, request, "key_revoked", tenant=revoked.tenant)
    return {"object": "api_key", "id": revoked.id, "tenant": revoked.tenant, "deleted": True}


async def _key_request(request: Request) -> KeyRequest:
    try:
        return KeyRequest.model_validate(await _json(request))
    except ValidationError as error:
        raise invalid_request(error) from None


async def _revoke_shared(runtime: Runtime, id_: str) -> StoredKey | None:
    shared = runtime.shared_keys
    if shared is None:
        return None
    revoked = await asyncio.to_thread(shared.revoke, id_)
    if revoked is not None:
        runtime.set_shared_keys(await asyncio.to_thread(shared.active))
    return revoked


def _config_key_ids(runtime: Runtime) -> set[str]:
    return {key_id(digest(key)) for t in runtime.config.tenants for key in t.api_keys}


@dataclass(frozen=True)
class _Stored:
    """What ``describe`` reads from the data directory: API-made keys and tenant settings."""

    keys: list[StoredKey]
    settings: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, runtime: Runtime) -> _Stored:
        return cls(KeyStore(runtime.config.data_dir).load(), runtime.tenant_settings.load())


def describe(runtime: Runtime, name: str, stored: _Stored | None = None) -> dict[str, Any]:
    stored = stored or _Stored.read(runtime)
    tenant = runtime.tenants[name]
    config = runtime.controls.tenant(name)
    keys = [
        {"id": k.id, "source": "api", "created_at": int(k.created_at)}
        for k in stored.keys
        if k.tenant == name
    ]
    keys += [
        {"id": k.id, "source": "shared", "created_at": int(k.created_at)}
        for k in runtime.shared_key_list()
        if k.tenant == name
    ]
    if config is not None:
        keys += [{"id": key_id(digest(key)), "source": "config"} for key in config.api_keys]
    spent = runtime.controls.gate.spent(name)
    return {
        "name": name,
        "weight": tenant.weight,
        "limits": config.limits.model_dump(mode="json") if config and config.limits else None,
        "max_reasoning_tokens": config.max_reasoning_tokens if config else None,
        "prompt_guard": (
            config.prompt_guard.model_dump(mode="json") if config and config.prompt_guard else None
        ),
        "budget_spent": None if spent is None else str(spent),
        "settings": stored.settings.get(name, {}),  # made here, over the file's
        "keys": keys,
    }
