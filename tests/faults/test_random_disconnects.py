"""Clients that go away at random points (queued, mid-reasoning, mid-answer, at the very end),
thirty at a time against capacity-limited sim engines: every request still ends in exactly one
record, the engines are left with nothing running, and the scheduler with nothing queued."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from fairgate.replicas.sim import SimReplica
from tests.faults.checks import assert_settled
from tests.faults.tally import TALLY
from tests.support.gateway_server import GatewayServer, sim_config

pytestmark = pytest.mark.timeout(90)
CLIENTS, REASONING, CONTENT = 30, 8, 40


def _config(tmp: Path) -> Any:
    sim = {
        "max_num_seqs": 3,
        "seconds_per_token": 0.004,
        "reasoning_tokens": REASONING,
        "content_tokens": CONTENT,
    }
    models = [{"name": "sim", "provider": "sim", "reasoning": "hidden", "replicas": 2, "sim": sim}]
    return sim_config(tmp, models=models, scheduler={"inflight_initial": 4})


def _client(url: str, seed: int, out: dict[str, Any]) -> None:
    rng = random.Random(seed)
    stream = rng.random() < 0.6
    body = {"model": "sim", "messages": [{"role": "user", "content": f"client {seed}"}]}
    headers = {"Authorization": "Bearer sk-alice" if seed % 2 else "Bearer sk-bob"}
    if stream:
        lines = rng.choice([0, 1, 3, 10, 25, 1000])  # 1000: read to the end
        with (
            httpx.Client(base_url=url, headers=headers, timeout=30) as http,
            http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r,
        ):
            out["id"], out["status"] = r.headers["x-request-id"], r.status_code
            for count, _ in enumerate(r.iter_lines()):
                if count >= lines:
                    break
            out["cut"] = lines < 1000
        return
    read = rng.choice([0.02, 0.1, 0.3, 30.0])  # 30: wait for the answer
    try:
        with httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(30, read=read)
        ) as http:
            response = http.post("/v1/chat/completions", json=body)
            out["id"], out["status"], out["cut"] = response.headers["x-request-id"], 200, False
    except httpx.ReadTimeout:
        out["cut"] = True  # no id: the answer never came (found below among the records)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_disconnects_leave_one_record_each(tmp_path: Path, seed: int) -> None:
    with GatewayServer(_config(tmp_path)) as server:
        results: list[dict[str, Any]] = [{} for _ in range(CLIENTS)]
        threads = [
            threading.Thread(target=_client, args=(server.base_url, seed * 100 + n, results[n]))
            for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a client hung"
        TALLY.requests += CLIENTS
        TALLY.fault("client disconnect", sum(1 for r in results if r.get("cut")))
        assert all(r.get("status", 200) == 200 for r in results), results
        records = _all_records(server, CLIENTS)
        assert_settled(server, [r["request_id"] for r in records])
        for replica in server.runtime.models["sim"].replicas.values():
            assert isinstance(replica, SimReplica) and replica.running == 0
    statuses = {r["status"] for r in records}
    assert statuses <= {"ok", "client_disconnected"}, statuses
    assert "client_disconnected" in statuses
    full = REASONING + CONTENT
    for record in records:
        done = record["usage"]["completion_tokens"]
        assert done == full if record["status"] == "ok" else done <= full, record
    known = {r["id"]: r for r in results if "id" in r}
    by_id = {r["request_id"]: r for r in records}
    for request_id, result in known.items():  # a client that read to the end was served
        if not result["cut"]:
            assert by_id[request_id]["status"] == "ok"


def _all_records(server: GatewayServer, count: int) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + 15
    while len(server.records()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    records = server.records()
    assert len(records) == count, f"{len(records)} records for {count} requests"
    return records
