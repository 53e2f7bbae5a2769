"""Operational endpoints: liveness, readiness, metrics, public keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fairgate.gateway.runtime import Runtime

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    models: dict[str, Any] = {
        name: {rid: state.value for rid, state in model.health.items()}
        for name, model in runtime.models.items()
    }
    ready = runtime.ready()
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "models": models},
        status_code=200 if ready else 503,
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/.well-known/fairgate-keys")
async def public_keys(request: Request) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    return runtime.recorder.jwks()
