"""Operational endpoints: liveness, readiness, metrics, public keys."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fairgate.gateway.replica_set import ModelRuntime
from fairgate.gateway.runtime import Runtime
from fairgate.replicas.base import Health

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when every model has a healthy replica. Otherwise the body says why: each model
    and replica with its state, and for an engine the gateway supervises its last error and
    when it is tried again."""
    runtime: Runtime = request.app.state.runtime
    models = {name: model_view(model) for name, model in runtime.models.items()}
    pending = sorted(runtime.fleet.pending) if runtime.fleet is not None else []
    failed = runtime.fleet.failed if runtime.fleet is not None else {}
    for name in pending:
        reason = failed.get(name, "being prepared (the log shows progress)")
        models.setdefault(name, {"ready": False, "reason": reason, "replicas": {}})
    ready = runtime.ready()
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "models": models}
    if not ready:
        body["reasons"] = [
            f"{name}: {view['reason']}" for name, view in models.items() if not view["ready"]
        ]
    return JSONResponse(body, status_code=200 if ready else 503)


def model_view(model: ModelRuntime) -> dict[str, Any]:
    replicas = {
        rid: replica_view(state, model.replicas.get(rid)) for rid, state in model.health.items()
    }
    ready = model.ready()
    view: dict[str, Any] = {"ready": ready, "replicas": replicas}
    if not ready:
        view["reason"] = not_ready_reason(replicas)
    return view


def replica_view(state: Health, replica: object) -> dict[str, Any]:
    view: dict[str, Any] = {"state": state.value}
    info = getattr(replica, "info", None)
    engine = (info() or {}).get("engine") if callable(info) else None
    if engine:
        view["engine"] = engine.get("state")
        for key in ("error", "next_retry_at", "restarts", "failed_starts", "log_path"):
            if engine.get(key) is not None:
                view[key] = engine[key]
    return view


def not_ready_reason(replicas: dict[str, dict[str, Any]]) -> str:
    if not replicas:
        return "no replicas"
    parts = []
    for rid, view in replicas.items():
        text = f"{rid} is {view.get('engine') or view['state']}"
        if view.get("error"):
            text += f" ({view['error']})"
        if view.get("next_retry_at"):
            text += f", next try in {max(view['next_retry_at'] - time.time(), 0):.0f} s"
        parts.append(text)
    return "; ".join(parts)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/.well-known/fairgate-keys")
async def public_keys(request: Request) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    return runtime.recorder.jwks()
