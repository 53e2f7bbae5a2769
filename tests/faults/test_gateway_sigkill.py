"""SIGKILL a real ``fairgate serve`` while streams are in flight, then restart it on the same
data directory (tests/e2e/test_ledger_crash.py does this for whole answers). Clients in flight
fail fast instead of hanging; every stream that got its receipt has exactly its record; the
restarted gateway continues the chain, serves, and its metrics agree with what it recorded."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.process import (
    GatewayProcess,
    exported_records,
    free_port,
    metric_total,
    write_config,
)
from tests.faults.tally import TALLY

pytestmark = pytest.mark.timeout(120)
SIM = {"seconds_per_token": 0.003, "reasoning_tokens": 8, "content_tokens": 30}


def _streams(url: str, key: str, stop: threading.Event, out: list[dict[str, Any]]) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    index = 0
    while not stop.is_set():
        index += 1
        body = {
            "model": "sim",
            "stream": True,
            "messages": [{"role": "user", "content": f"{key} {index}"}],
        }
        result: dict[str, Any] = {"receipt": None, "ended": None}
        began = time.monotonic()
        try:
            with (
                httpx.Client(base_url=url, headers=headers, timeout=10) as http,
                http.stream("POST", "/v1/chat/completions", json=body) as response,
            ):
                result["id"] = response.headers.get("x-request-id")
                for line in response.iter_lines():
                    if line.startswith("data: {") and '"receipt"' in line:
                        result["receipt"] = json.loads(line[6:])["receipt"]
        except httpx.HTTPError as error:
            result["error"] = repr(error)
        result["ended"], result["took"] = time.monotonic(), time.monotonic() - began
        TALLY.requests += 1
        out.append(result)
        if "error" in result:
            return


def test_sigkill_mid_stream_then_restart(tmp_path: Path) -> None:
    models = [{"name": "sim", "provider": "sim", "reasoning": "hidden", "replicas": 2, "sim": SIM}]
    config, port = write_config(tmp_path, models=models), free_port()
    gateway = GatewayProcess(config, port).start()
    results: list[dict[str, Any]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_streams, args=(gateway.url, key, stop, results))
        for key in ("sk-alice", "sk-bob") * 4
    ]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2.5)
        os.kill(gateway.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        TALLY.fault("gateway SIGKILL mid-stream")
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        assert not any(t.is_alive() for t in threads), "a client hung after the kill"
    finally:
        gateway.kill()
    cut = [r for r in results if "error" in r]
    assert cut, "no stream was in flight at the kill"
    assert all(r["ended"] - killed_at < 5 for r in cut), "a client waited long after the kill"
    served = [r for r in results if r["receipt"] is not None]
    assert len(served) > 20, "the load did not get going"

    with GatewayProcess(config, port) as again:
        after = [_one(again.url, n) for n in range(5)]
        appended = metric_total(again.url, "fairgate_ledger_records_total")
        finished = metric_total(again.url, "fairgate_requests_total")
        again.stop()
    records = exported_records(config, tmp_path)  # the CLI verifies the whole chain
    TALLY.records_verified += len(records)
    by_id: dict[str, dict[str, Any]] = {}
    for record in records:
        assert record["request_id"] not in by_id, "a request was recorded twice"
        by_id[record["request_id"]] = record
    for item in served:
        record = by_id[item["receipt"]["request_id"]]
        assert record["seq"] == item["receipt"]["seq"]
        assert record["signature"] == item["receipt"]["signature"]
    assert all(a["status_code"] == 200 and a["request_id"] in by_id for a in after)
    assert appended == finished == len(after)  # the restarted process counts only its own
    # Streams cut by the kill were not served: at most their record, never a receipt.
    assert len(records) >= len(served) + len(after)


def _one(url: str, index: int) -> dict[str, Any]:
    TALLY.requests += 1
    response = httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": "Bearer sk-alice"},
        json={"model": "sim", "messages": [{"role": "user", "content": f"after {index}"}]},
        timeout=20,
    )
    body = response.json()
    request_id = body.get("receipt", {}).get("request_id")
    return {"status_code": response.status_code, "request_id": request_id}
