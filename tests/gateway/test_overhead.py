"""``x-fairgate-overhead-ms``: the gateway's own time, on streamed and non-streamed answers."""

from __future__ import annotations

import httpx
import pytest

from fairgate.gateway.overhead import UpstreamClock
from tests.gateway.conftest import client
from tests.support.gateway_server import GatewayServer

MESSAGES = [{"role": "user", "content": "What is the overhead?"}]


def test_clock_subtracts_the_upstream_share(monkeypatch: pytest.MonkeyPatch) -> None:
    now = iter([10.0, 10.5, 12.0])
    monkeypatch.setattr("fairgate.gateway.overhead.time.monotonic", lambda: next(now))
    clock = UpstreamClock()
    assert clock.overhead_ms(9.0, now=9.25) == pytest.approx(250.0)  # nothing sent yet
    clock.request_sent()  # 10.0
    clock.event()  # 10.5: the first event
    clock.event()  # later events do not move it
    # A stream's header: arrival 9.0, now 10.6; the upstream's share is 0.5 s.
    assert clock.overhead_ms(9.0, now=10.6) == pytest.approx(1100.0)
    clock.ended()  # 12.0
    assert clock.overhead_ms(9.0, now=12.25) == pytest.approx(1250.0)


def test_header_on_streamed_and_whole_answers(gateway: GatewayServer) -> None:
    whole = client(gateway).chat.completions.with_raw_response.create(
        model="sim-hidden", messages=MESSAGES
    )
    overhead = float(whole.headers["x-fairgate-overhead-ms"])
    assert 0.0 < overhead < 5000.0
    body = {"model": "sim-hidden", "messages": MESSAGES, "stream": True}
    headers = {"authorization": "Bearer sk-alice"}
    with httpx.stream(
        "POST", gateway.base_url + "/v1/chat/completions", json=body, headers=headers
    ) as streamed:
        assert streamed.status_code == 200
        assert 0.0 < float(streamed.headers["x-fairgate-overhead-ms"]) < 5000.0
        assert streamed.headers["x-request-id"].startswith("req_")
        assert len(streamed.headers.get_list("x-request-id")) == 1
        assert b"[DONE]" in streamed.read()
