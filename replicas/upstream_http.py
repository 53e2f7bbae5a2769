"""A small HTTP/1.1 client for the engines' streamed answers: keep-alive connections pooled
per replica, responses parsed by httptools (the C parser uvicorn uses), the body handed over
one socket read at a time.

It does only what the ``openai`` provider needs: a POST with a JSON body, the status, and the
body's bytes as they arrive (chunked or not; gzip and deflate undone). Against aiohttp's
client it skips per request the cookie jar, tracing hooks, URL objects, header multidicts,
the timeout machinery and a stream reader that handles every HTTP chunk on its own; per
32-token stream that was about 0.2 ms of CPU (``bench/RESULTS.md``, "Gateway hot path").

Errors: ``ConnectFailed`` when no connection could be made (nothing reached the engine);
``UpstreamBroken`` when a connection broke, a response could not be parsed, or a read timed
out.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

__all__ = ["ConnectFailed", "HttpPool", "Response", "UpstreamBroken"]

_HIGH_WATER = 256 * 1024  # buffered body bytes past which the socket stops being read
_CONNECT_ATTEMPTS = 2  # a connect that times out is tried once more before the replica is down


class UpstreamBroken(Exception):
    """The connection broke, the response was malformed, or a read timed out."""


class ConnectFailed(UpstreamBroken):
    """No connection could be made."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one exchange at a time; the parser's callbacks fill it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.begin()

    def begin(self) -> None:
        self.status = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.received = False  # any byte of this exchange's response
        self.encoding = b""
        self.framed = False  # the body's end is known from its length or its chunks
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.error: UpstreamBroken | None = None
        self._header = b""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - never asked for
            self._fail(UpstreamBroken("unexpected protocol upgrade"))
        except httptools.HttpParserError as error:
            self._fail(UpstreamBroken(f"malformed response: {error}"))
        if self.buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.framed and exc is None and self.error is None:
            self.complete = True  # a body without length or chunks ends with the connection
        if not self.complete and self.error is None:
            self.error = UpstreamBroken(f"connection closed: {exc!r}" if exc else "server closed")
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-encoding":
            self.encoding = value.strip().lower()
        elif lowered in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # the reader's side
    def _fail(self, error: UpstreamBroken) -> None:
        if self.error is None:
            self.error = error
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout_s: float) -> None:
        """Until the parser has something new, the connection ends, or ``timeout_s``."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout_s, self._timed_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self._fail(UpstreamBroken("read timed out"))
            waiter.set_result(None)

    def take(self) -> bytes:
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """One response: ``status``, then its body with ``read`` or ``chunks``; ``close`` gives
    the connection back to the pool if the body was read to its end."""

    def __init__(self, pool: HttpPool, conn: _Connection, read_timeout_s: float) -> None:
        self._pool = pool
        self._conn = conn
        self._timeout = read_timeout_s
        self.status = conn.status
        self._inflate = _decompressor(conn.encoding)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes, one piece per socket read (however many HTTP chunks it held)."""
        conn = self._conn
        while True:
            if conn.chunks:
                data = conn.take()
                yield self._inflate.decompress(data) if self._inflate else data
            elif conn.complete:
                break
            elif conn.error is not None:
                raise conn.error
            else:
                await conn.wait(self._timeout)
        if self._inflate:
            tail = self._inflate.flush()
            if tail:
                yield tail

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.chunks()])

    def close(self) -> None:
        self._pool.release(self._conn)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _decompressor(encoding: bytes) -> zlib._Decompress | None:
    if encoding in (b"gzip", b"x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == b"deflate":
        return zlib.decompressobj()
    if encoding in (b"", b"identity"):
        return None
    raise UpstreamBroken(f"unsupported content-encoding {encoding.decode('latin-1')!r}")


class HttpPool:
    """Keep-alive connections to one server (``url``: scheme, host and port; no path).

    A connection idle for ``keepalive_s`` or more is closed instead of reused: servers close
    idle ones (vLLM's uvicorn after 5 s), and a write to one they closed breaks the request.
    ``request`` (``post``, ``get``) sends once more, on a new connection, when a pooled one
    turns out closed by the server before any byte of the answer came back (so nothing ran on
    the engine).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        keepalive_s: float,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s)://host[:port] URL, got {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        host_header = parts.netloc.rsplit("@", 1)[-1]
        fixed = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._head_tail = f"Host: {host_header}\r\n{fixed}".encode("latin-1")
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._idle: list[_Connection] = []
        self.closed = False

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST ``body``; returns once the response's status line and headers are in."""
        return await self.request("POST", path, body, headers)

    async def get(self, path: str) -> Response:
        return await self.request("GET", path, b"", {})

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> Response:
        conn, pooled = await self._connection()
        try:
            await self._exchange(conn, method, path, body, headers)
        except UpstreamBroken:
            conn.close()
            if not pooled or conn.received:
                raise
            conn, _ = await self._connection(fresh=True)
            try:
                await self._exchange(conn, method, path, body, headers)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        return Response(self, conn, self.read_timeout_s)

    async def _exchange(
        self, conn: _Connection, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> None:
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = (
            f"{method} {path} HTTP/1.1\r\n".encode("latin-1")
            + self._head_tail
            + f"{extra}Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
        )
        conn.begin()
        assert conn.transport is not None
        conn.transport.write(head + body)
        while not conn.headers_done:
            if conn.error is not None:
                raise conn.error
            await conn.wait(self.read_timeout_s)

    async def _connection(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        """A pooled connection (and ``True``) or a new one."""
        if self.closed:
            raise ConnectFailed("the connection pool is closed")
        now = time.monotonic()
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive_s:
                return conn, True
            conn.close()
        for attempt in range(_CONNECT_ATTEMPTS):
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    return await self._connect(), False
            except TimeoutError:
                # Refused or reset is an answer; a timeout is not one: it is also what a
                # starved event loop sees (CI, stop 23: a healthy engine's connect "timed
                # out" while both cores were busy, and the replica was marked down).
                if attempt + 1 == _CONNECT_ATTEMPTS:
                    raise ConnectFailed(
                        f"cannot connect to {self._host}:{self._port}: no answer in "
                        f"{_CONNECT_ATTEMPTS} x {self.connect_timeout_s:g} s"
                    ) from None
            except OSError as error:
                raise ConnectFailed(
                    f"cannot connect to {self._host}:{self._port}: {error!r}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> _Connection:
        _, conn = await asyncio.get_running_loop().create_connection(
            _Connection,
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl else None,
        )
        return conn

    def release(self, conn: _Connection) -> None:
        """Back to the pool if its exchange ended cleanly and both ends keep it alive."""
        if self.closed or conn.closed or not conn.complete or not conn.keep_alive or conn.chunks:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def close(self) -> None:
        self.closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
