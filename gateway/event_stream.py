"""The streamed response of the generation endpoints: server-sent events, each piece of the
body sent as it comes, and the body's generator cancelled where it stands when the client
leaves (``client_gone``), with one watching task instead of Starlette's task group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fairgate.gateway.client_gone import ClientGone

# An SSE comment: clients skip it (the openai SDKs ignore lines that start with ":"), while
# proxies and load balancers see bytes and keep the connection open.
KEEPALIVE = b": keep-alive\n\n"


class LastPiece(bytes):
    """The body's last piece: it leaves with the end of the response, in one write."""


class EventStream(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncIterator[bytes],
        headers: Mapping[str, str],
        watch: ClientGone | None = None,
    ) -> None:
        """``watch``: the request's ``ClientGone``, if it already has one (this response
        closes it); else the response starts its own."""
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self.init_headers({**headers, "cache-control": "no-cache"})
        self._watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = self._watch or ClientGone(receive)
        ended = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                ended = type(chunk) is LastPiece
                await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
                # A send to a gone client returns at once, and reads the upstream had already
                # buffered need no wait: after a stalled loop the whole answer could go out
                # to no one (recorded ok) before the watch had its turn. It gets one here.
                await asyncio.sleep(0)
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watch.absorb():
                raise
        finally:
            watch.close()
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:  # cancelled in a send: the body ends (and records) now
                await aclose()
