"""Open-loop streaming load: requests start on a Poisson schedule whatever the answers do.

A small HTTP/1.1 client (httptools' response parser, keep-alive connections reused from a
pool) so that the load generator's own cost stays small next to the proxies'. Each request
records its time to the first body byte (TTFB: the first SSE event), its total time (the
last byte), and whether the answer arrived whole (status 200, the last content word, and
``[DONE]``).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

__all__ = ["LoadResult", "Sample", "run_load"]

REQUEST_TIMEOUT_S = 10.0


@dataclass(slots=True)
class Sample:
    ttfb: float  # seconds from send to the first body byte
    total: float  # seconds from send to the last byte
    ok: bool
    error: str = ""
    overhead_ms: float | None = None  # x-fairgate-overhead-ms, when the gateway sent it


@dataclass(slots=True)
class LoadResult:
    rate: float
    duration_s: float
    samples: list[Sample] = field(default_factory=list)
    late_s: list[float] = field(default_factory=list)  # how late each send was vs schedule
    wall_s: float = 0.0


class _Exchange(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = asyncio.get_running_loop().create_future()
        self._reset(None)

    def _reset(self, done: asyncio.Future[None] | None) -> None:
        self.done = done
        self.sent = 0.0
        self.first: float | None = None
        self.body = bytearray()
        self.header_name = b""
        self.overhead: float | None = None
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if self.done is not None and not self.done.done():
                self.done.set_exception(error)
            assert self.transport is not None
            self.transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-fairgate-overhead-ms":
            try:
                self.overhead = float(value)
            except ValueError:
                self.overhead = None

    def on_body(self, body: bytes) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.body += body

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def send(self, request: bytes) -> tuple[float, float, int, bytes, float | None]:
        assert self.transport is not None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reset(done)
        self.sent = time.perf_counter()
        self.transport.write(request)
        await done
        end = time.perf_counter()
        first = self.first if self.first is not None else end
        status = self.parser.get_status_code()
        return first - self.sent, end - self.sent, status, bytes(self.body), self.overhead


class _Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Exchange] = []

    async def get(self) -> _Exchange:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed.done():
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Exchange, self.host, self.port)
        return conn

    def put(self, conn: _Exchange) -> None:
        if conn.keep_alive and not conn.closed.done():
            self.idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


def build_request(url: str, key: str, model: str) -> tuple[str, int, bytes]:
    """The raw bytes of one streaming chat request to ``url`` (a ``.../v1`` base URL)."""
    parts = urlsplit(url)
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Say something short."}],
            "max_tokens": 32,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    head = (
        f"POST {parts.path}/chat/completions HTTP/1.1\r\nhost: {parts.netloc}\r\n"
        f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
        f"accept: text/event-stream\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return parts.hostname or "127.0.0.1", parts.port or 80, head.encode() + body


async def _one(pool: _Pool, request: bytes, expect: bytes) -> Sample:
    conn: _Exchange | None = None
    try:
        conn = await pool.get()
        ttfb, total, status, body, overhead = await asyncio.wait_for(
            conn.send(request), REQUEST_TIMEOUT_S
        )
    except (OSError, ConnectionError, httptools.HttpParserError) as error:
        return Sample(0.0, 0.0, False, type(error).__name__)
    except TimeoutError:
        if conn is not None and conn.transport is not None:
            conn.transport.close()
        return Sample(0.0, 0.0, False, "timeout")
    pool.put(conn)
    if status != 200:
        return Sample(ttfb, total, False, f"HTTP {status}")
    whole = expect in body and body.rstrip().endswith(b"data: [DONE]")
    return Sample(ttfb, total, whole, "" if whole else "short answer", overhead)


async def run_load(
    url: str,
    key: str,
    model: str,
    expect: str,
    *,
    rate: float,
    duration_s: float,
    seed: int = 0,
    grace_s: float = REQUEST_TIMEOUT_S,
) -> LoadResult:
    """Poisson arrivals at ``rate`` per second for ``duration_s``; then wait for the stragglers
    (each request has its own timeout, so this ends)."""
    host, port, request = build_request(url, key, model)
    expected = json.dumps(expect)[1:-1].encode()
    pool = _Pool(host, port)
    rng = random.Random(seed)
    result = LoadResult(rate, duration_s)
    tasks: list[asyncio.Task[Sample]] = []
    start = time.perf_counter()
    due = start
    loop = asyncio.get_running_loop()
    while True:
        due += rng.expovariate(rate)
        if due - start >= duration_s:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        result.late_s.append(max(0.0, time.perf_counter() - due))
        tasks.append(loop.create_task(_one(pool, request, expected)))
    done, pending = await asyncio.wait(tasks, timeout=grace_s) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    result.samples = [t.result() for t in tasks if t in done]
    result.samples += [Sample(0.0, 0.0, False, "unfinished") for _ in pending]
    result.wall_s = time.perf_counter() - start
    pool.close()
    return result
