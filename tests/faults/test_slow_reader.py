"""A streaming client that stops reading but stays connected is not a disconnect: the gateway
waits on the socket (the kernel's buffers take what they can) and the answer is still whole
once the client reads on. (An e2e test once mistook a dropped line iterator, which closes
httpx's connection, for a gateway that gave up on slow readers.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.upstream import upstream_config
from tests.support.fake_upstream import CONTENT_WORD, FakeUpstream
from tests.support.gateway_server import GatewayServer

pytestmark = pytest.mark.timeout(60)
CONTENT = 3000  # about 1 MB of SSE: more than the socket buffers hold on some machines


def test_a_client_that_pauses_is_served_to_the_end(tmp_path: Path) -> None:
    body = {
        "model": "up",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": CONTENT + 4,  # the reasoning counts too
    }
    headers = {"Authorization": "Bearer sk-alice"}
    with (
        FakeUpstream("--reasoning", "4", "--content", str(CONTENT)) as upstream,
        GatewayServer(upstream_config(tmp_path, [upstream.url])) as server,
        httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        lines = response.iter_lines()
        first = next(lines)
        time.sleep(3)  # not reading
        early = [r["status"] for r in server.records()]
        assert "client_disconnected" not in early, early
        rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
    text = "".join(_content(line) for line in [first, *rest[:-1]])
    assert text == CONTENT_WORD * CONTENT
    deadline = time.monotonic() + 10
    while not server.records() and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = server.records()
    assert record["status"] == "ok"
    assert record["usage"]["completion_tokens"] == CONTENT + 4


def _content(line: str) -> str:
    chunk = json.loads(line.removeprefix("data: "))
    return "".join((c.get("delta") or {}).get("content") or "" for c in chunk.get("choices", []))
