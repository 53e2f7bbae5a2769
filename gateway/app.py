"""The FastAPI application: routes, request ids, and OpenAI-shaped errors for everything."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fairgate import __version__
from fairgate.gateway import admin, admin_tenants, api, audit, ops, responses
from fairgate.gateway.client_gone import ClientLeft
from fairgate.gateway.config import Config
from fairgate.gateway.errors import APIError, error_body
from fairgate.gateway.plain_route import PlainRoute
from fairgate.gateway.request_ids import new_request_id
from fairgate.gateway.runtime import Runtime

log = logging.getLogger("fairgate.app")


def create_app(config: Config, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="fairgate", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.runtime = runtime
    app.include_router(api.router)
    app.include_router(responses.router)
    app.include_router(ops.router)
    app.include_router(admin.router)
    app.include_router(admin_tenants.router)
    app.include_router(audit.router)
    app.add_middleware(RequestIdMiddleware, hot=_hot_routes(app))
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientLeft, _client_left)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    return app


class RequestIdMiddleware:
    """Gives every HTTP request an id (``request.state.request_id``) and sends it back as
    ``x-request-id``. Plain ASGI: Starlette's ``BaseHTTPMiddleware`` would relay every
    streamed chunk through a memory stream and a task of its own.

    ``hot``: POST routes served from here straight to their ASGI app, past the exception
    middleware, FastAPI's exit stack and the router's matching (the generation endpoints,
    ``PlainRoute``s); an ``APIError`` they raise before their response starts is answered
    as the application's handler answers it, anything else reaches ``ServerErrorMiddleware``
    as before."""

    def __init__(self, app: ASGIApp, hot: Mapping[str, ASGIApp] | None = None) -> None:
        self.app = app
        self.hot = dict(hot or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", ()) if h[0] != b"x-request-id"]
                message["headers"] = [*headers, header]
            await send(message)

        hot = self.hot.get(scope["path"]) if scope["method"] == "POST" else None
        if hot is None or scope.get("root_path"):
            await self.app(scope, receive, send_with_id)
            return
        try:
            await hot(scope, receive, send_with_id)
        except APIError as error:
            if started:
                raise
            await error.response()(scope, receive, send_with_id)


def _hot_routes(app: FastAPI) -> dict[str, ASGIApp]:
    """The POST-only ``PlainRoute``s of ``app``, by path."""
    return {
        route.path: route.app
        for route in app.router.routes
        if isinstance(route, PlainRoute)
        and route.methods == {"POST"}
        and not route.param_convertors
    }


async def _api_error(request: Request, error: APIError) -> JSONResponse:
    return error.response()


async def _client_left(request: Request, error: Exception) -> Response:
    return Response(status_code=499)  # dropped by the server: the client is gone


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(p) for p in first["loc"][1:]) or None
    return JSONResponse(error_body(str(first["msg"]), "invalid_request_error", param), 400)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    kind = "invalid_request_error" if error.status_code < 500 else "api_error"
    message = error.detail if isinstance(error.detail, str) else "request failed"
    if error.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
    return JSONResponse(
        error_body(message, kind), error.status_code, headers=getattr(error, "headers", None)
    )


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    log.exception("request %s failed unexpectedly", request_id)
    return JSONResponse(
        error_body(f"The server had an error processing request {request_id}.", "server_error"),
        500,
        headers={"x-request-id": request_id},
    )
