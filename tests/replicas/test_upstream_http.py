"""The engines' HTTP client: keep-alive reuse and its lifetime, the one re-POST on a pooled
connection the server closed, chunked and compressed bodies, timeouts, connection errors."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from fairgate.replicas.upstream_http import ConnectFailed, HttpPool, UpstreamBroken

pytestmark = pytest.mark.timeout(30)


class Server:
    """Answers each request with what ``answer(request_number)`` returns (raw bytes)."""

    def __init__(self, answer: Callable[[int], bytes | None], close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                reply = self.answer(len(self.requests))
                if reply is None:  # hang up without answering
                    break
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        for writer in server.writers:
            writer.close()


def chunked(*pieces: bytes, headers: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + headers + b"\r\n" + body


def pool(url: str, keepalive_s: float = 4.0, read_timeout_s: float = 5.0) -> HttpPool:
    return HttpPool(
        url,
        headers={"Authorization": "Bearer k"},
        keepalive_s=keepalive_s,
        connect_timeout_s=2.0,
        read_timeout_s=read_timeout_s,
    )


async def body_of(client: HttpPool, payload: bytes = b"{}") -> tuple[int, bytes]:
    async with await client.post("/v1/chat/completions", payload, {"x-request-id": "r"}) as resp:
        return resp.status, await resp.read()


async def test_a_chunked_body_arrives_whole_and_the_connection_is_reused() -> None:
    server = Server(lambda n: chunked(b"data: a\n\n", b"data: b\n\n"))
    async with serving(server) as url:
        client = pool(url)
        assert await body_of(client, b'{"x":1}') == (200, b"data: a\n\ndata: b\n\n")
        assert await body_of(client) == (200, b"data: a\n\ndata: b\n\n")
        await client.close()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Authorization: Bearer k\r\n" in first and b"x-request-id: r\r\n" in first
    assert first.endswith(b'Content-Length: 7\r\n\r\n{"x":1}')


async def test_pieces_come_one_socket_read_at_a_time() -> None:
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"3\r\ntwo\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = pool(f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}")
    response = await client.post("/p", b"{}", {})
    pieces = response.chunks()
    assert await anext(pieces) == b"one"  # before the rest was even written
    release.set()
    assert [p async for p in pieces] == [b"two"]
    response.close()
    await client.close()
    listener.close()


async def test_an_idle_connection_past_its_lifetime_is_not_reused() -> None:
    server = Server(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    async with serving(server) as url:
        client = pool(url, keepalive_s=0.2)
        assert await body_of(client) == (200, b"ok")
        await asyncio.sleep(0.3)
        assert await body_of(client) == (200, b"ok")
        await client.close()
    assert server.connections == 2


async def test_a_pooled_connection_the_server_closed_is_posted_once_more() -> None:
    # The second request reaches a connection the server hangs up without answering.
    server = Server(lambda n: None if n == 2 else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    async with serving(server) as url:
        client = pool(url)
        assert await body_of(client) == (200, b"ok")
        assert await body_of(client) == (200, b"ok")
        await client.close()
    assert server.connections == 2 and len(server.requests) == 3


async def test_a_new_connection_closed_without_an_answer_is_not_retried() -> None:
    server = Server(lambda n: None)
    async with serving(server) as url:
        client = pool(url)
        with pytest.raises(UpstreamBroken):
            await body_of(client)
        await client.close()
    assert len(server.requests) == 1


async def test_a_connection_that_breaks_after_the_answer_began_is_not_retried() -> None:
    server = Server(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart", True)
    async with serving(server) as url:
        client = pool(url)
        with pytest.raises(UpstreamBroken):
            await body_of(client)
        await client.close()
    assert len(server.requests) == 1


async def test_a_body_without_length_or_chunks_ends_with_the_connection() -> None:
    server = Server(lambda n: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: a\n\n", True)
    async with serving(server) as url:
        client = pool(url)
        assert await body_of(client) == (200, b"data: a\n\n")
        assert await body_of(client) == (200, b"data: a\n\n")  # on a new connection
        await client.close()
    assert server.connections == 2


async def test_gzip_is_undone_and_errors_keep_their_status() -> None:
    packed = gzip.compress(b'{"error": {"message": "bad"}}')
    reply = b"HTTP/1.1 400 Bad Request\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
    server = Server(lambda n: reply % len(packed) + packed)
    async with serving(server) as url:
        client = pool(url)
        assert await body_of(client) == (400, b'{"error": {"message": "bad"}}')
        await client.close()


async def test_nothing_listening_is_a_connect_failure() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    client = pool(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectFailed):
        await client.post("/p", b"{}", {})


async def test_a_connect_that_times_out_is_tried_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """A starved event loop sees a healthy engine's connect time out: one more try."""
    async with serving(Server(lambda n: chunked(b"ok"))) as url:
        client = HttpPool(url, keepalive_s=4.0, connect_timeout_s=0.2, read_timeout_s=5.0)
        real, tries = client._connect, []

        async def late_once() -> Any:
            tries.append(1)
            if len(tries) == 1:
                await asyncio.sleep(1)
            return await real()

        monkeypatch.setattr(client, "_connect", late_once)
        assert await body_of(client) == (200, b"ok")
        assert len(tries) == 2

        async def never() -> Any:
            await asyncio.sleep(10)

        monkeypatch.setattr(client, "_connect", never)
        client._idle.clear()
        with pytest.raises(ConnectFailed, match=r"no answer in 2 x 0\.2 s"):
            await client.post("/p", b"{}", {})
        await client.close()


async def test_a_silent_server_times_out() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = pool(f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}", read_timeout_s=0.2)
    with pytest.raises(UpstreamBroken, match="timed out"):
        await client.post("/p", b"{}", {})
    await client.close()
    listener.close()


def test_only_http_urls() -> None:
    with pytest.raises(ValueError):
        pool("ftp://example.com")
