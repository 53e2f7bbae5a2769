"""Operator endpoints, behind the admin key: the replicas and their state, and reload.

    GET  /admin/replicas   every model's replicas: health, engine state, URL, restarts
    POST /admin/reload     re-read the configuration; apply replica counts (like SIGHUP)

The admin key is ``admin_key`` from the configuration; when that is unset, a random key is
generated once into ``<data_dir>/admin-key`` (mode 0600), which ``fairgate replicas`` reads on
the same machine. It is presented as a Bearer token and compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from fairgate.gateway.auth import bearer_token
from fairgate.gateway.config import Config, ConfigError
from fairgate.gateway.errors import Forbidden, InvalidRequest, Unauthorized
from fairgate.gateway.runtime import Runtime
from fairgate.metering.usage import Usage

router = APIRouter(prefix="/admin")
ADMIN_KEY_FILE = "admin-key"
ADMIN_KEY_PREFIX = "sk-fg-admin-"
ADMIN_TENANT = "@admin"  # the ledger's tenant for admin actions; no tenant name has an "@"


def admin_key(config: Config) -> str:
    """The configured admin key, else the generated one (created on first use)."""
    if config.admin_key:
        return config.admin_key
    path = Path(config.data_dir) / ADMIN_KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ADMIN_KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # created concurrently (the gateway and the CLI)
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def require_admin(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    token = bearer_token(request.headers.get("authorization"))
    if not token:
        raise Unauthorized(
            "This endpoint needs the admin key. Send it as 'Authorization: Bearer <key>'."
        )
    expected = admin_key(runtime.config)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        if runtime.keyring.lookup(token) is not None:
            raise Forbidden("A tenant API key cannot use the admin endpoints.")
        raise Unauthorized("Incorrect admin key provided.")
    return runtime


async def record_action(
    runtime: Runtime,
    request: Request,
    action: str,
    *,
    tenant: str = ADMIN_TENANT,
    status_code: int = 200,
) -> None:
    """One ledger record for one admin action (no usage, no model)."""
    await runtime.recorder.record(
        request_id=request.state.request_id,
        tenant=tenant,
        model="-",
        replica=None,
        status=f"admin_{action}",
        status_code=status_code,
        started_at=time.time(),
        usage=Usage(),
    )


@router.get("/replicas")
async def list_replicas(request: Request) -> dict[str, Any]:
    runtime = require_admin(request)
    await record_action(runtime, request, "replicas")
    return describe(runtime)


@router.post("/reload")
async def reload(request: Request) -> dict[str, Any]:
    runtime = require_admin(request)
    try:
        result = await runtime.reload()
    except ConfigError as error:
        await record_action(runtime, request, "reload_failed", status_code=400)
        raise InvalidRequest(f"the new configuration is invalid: {error}") from None
    await record_action(runtime, request, "reload")
    return result


def describe(runtime: Runtime) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for name, model in runtime.models.items():
        replicas = []
        for rid, replica in list(model.replicas.items()):
            health = model.health.get(rid)
            entry: dict[str, Any] = {
                "replica": rid,
                "health": "draining" if rid in runtime.draining else (health and health.value),
                "url": replica.url,
            }
            info = getattr(replica, "info", None)
            if callable(info):
                entry.update(info())
            replicas.append(entry)
        models[name] = {
            "provider": model.config.provider,
            "replicas_configured": model.config.replicas,
            "ready": model.ready(),
            "replicas": replicas,
        }
    pending = sorted(runtime.fleet.pending) if runtime.fleet is not None else []
    failed = dict(runtime.fleet.failed) if runtime.fleet is not None else {}
    return {
        "ready": runtime.ready(),
        "pending_models": pending,
        "failed_models": failed,
        "models": models,
    }
