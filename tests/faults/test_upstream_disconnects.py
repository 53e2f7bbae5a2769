"""Clients that go away while the gateway streams from real upstream processes: the gateway
closes each upstream stream too (the upstream sees its answer cut, none stays open), keeps no
connection or descriptor per cut request, and records each request once."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.checks import assert_settled
from tests.faults.tally import TALLY
from tests.faults.upstream import upstream_config
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway_server import GatewayServer

pytestmark = pytest.mark.timeout(90)
CLIENTS, ROUNDS = 16, 3
# A whole answer takes 10 s: a stream the gateway failed to close would still be open when
# the test looks, a few seconds after the clients left. Clients that mean to finish ask for
# 30 tokens.
SLOW = ("--reasoning", "10", "--content", "2000", "--delay", "0.005")


def _client(url: str, seed: int, out: list[str]) -> None:
    rng = random.Random(seed)
    body: dict[str, Any] = {"model": "up", "messages": [{"role": "user", "content": f"c {seed}"}]}
    if rng.random() < 0.25:
        body["max_tokens"] = 30
    headers = {"Authorization": "Bearer sk-alice"}
    if rng.random() < 0.5:
        with (
            httpx.Client(base_url=url, headers=headers, timeout=30) as http,
            http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r,
        ):
            out.append(r.headers["x-request-id"])
            for count, _ in enumerate(r.iter_lines()):
                if count >= rng.choice([0, 2, 20, 60]) if "max_tokens" not in body else 10_000:
                    break
        return
    try:
        with httpx.Client(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(
                30, read=rng.choice([0.05, 0.3, 0.6]) if "max_tokens" not in body else 10
            ),
        ) as http:
            http.post("/v1/chat/completions", json=body)
    except httpx.ReadTimeout:
        pass


def _stats(upstream: FakeUpstream) -> dict[str, int]:
    return dict(httpx.get(upstream.url + "/stats", timeout=5).json())


def _round(server: GatewayServer, seed: int) -> list[str]:
    ids: list[str] = []
    threads = [
        threading.Thread(target=_client, args=(server.base_url, seed * 100 + n, ids))
        for n in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    assert not any(t.is_alive() for t in threads), "a client hung"
    TALLY.requests += CLIENTS
    return ids


def test_cut_clients_cut_their_upstream_streams(tmp_path: Path) -> None:
    with (
        FakeUpstream(*SLOW) as one,
        FakeUpstream(*SLOW) as two,
        GatewayServer(upstream_config(tmp_path, [one.url, two.url])) as server,
    ):
        fds: list[int] = []
        for seed in range(ROUNDS):
            _round(server, seed)
            deadline = time.monotonic() + 3
            while any(_stats(u)["active"] for u in (one, two)):
                assert time.monotonic() < deadline, "an upstream stream was left open"
                time.sleep(0.05)
            fds.append(len(os.listdir("/proc/self/fd")))
        stats = [_stats(u) for u in (one, two)]
        TALLY.fault("client disconnect (openai upstream)", sum(s["broken"] for s in stats))
        # A record commits a few ms after its upstream stream closed; a lost one never does.
        deadline = time.monotonic() + 10
        while len(records := server.records()) < CLIENTS * ROUNDS:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(records) == CLIENTS * ROUNDS
        settled: list[Any] = assert_settled(server, [r["request_id"] for r in records])
    # No request went upstream twice (a client that left while queued never went at all).
    assert sum(s["served"] for s in stats) <= CLIENTS * ROUNDS
    assert sum(s["broken"] for s in stats) > CLIENTS // 2, stats  # the cuts reached upstream
    assert {r["status"] for r in settled} == {"ok", "client_disconnected"}
    assert fds[-1] <= fds[0] + 4, f"descriptors grew round by round: {fds}"
