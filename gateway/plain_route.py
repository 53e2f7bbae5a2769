"""A route documented in the OpenAPI schema like any FastAPI route, but served as a plain ASGI
app: the endpoint takes the ``Request`` and returns its ``Response``, with none of FastAPI's
per-request machinery (dependency solving, two exit stacks, Starlette's exception wrapper).
For the generation endpoints, the gateway's hot path. An ``APIError`` they raise still
reaches the application's handlers (``ExceptionMiddleware``), as from any route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fairgate.gateway.client_gone import ClientLeft

Endpoint = Callable[[Request], Awaitable[Response]]


class PlainRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = _serve(endpoint)


def _serve(endpoint: Endpoint) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await endpoint(Request(scope, receive, send))
        except ClientLeft:
            return  # nobody to answer; the server stays quiet for a gone client
        await response(scope, receive, send)

    return app
