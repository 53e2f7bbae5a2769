"""The ledger's PostgreSQL server goes down (an immediate stop, as a crash) under a gateway:
while it is down the gateway refuses new work with 503 ledger_unavailable rather than serve
requests it cannot bill, and once it is back the gateway takes work again and the chain,
exported and verified, holds every request that was served."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fairgate.metering.export import jsonl_line
from fairgate.metering.verify import verify_export
from tests.faults.tally import TALLY
from tests.support.gateway_server import GatewayServer, sim_config
from tests.support.postgres import PostgresServer, pg_bin

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    bin_dir = pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing in CI")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    server = PostgresServer(bin_dir).init()
    try:
        yield server
    finally:
        server.remove()


def _ask(server: GatewayServer, index: int) -> dict[str, Any]:
    TALLY.requests += 1
    response = httpx.post(
        server.base_url + "/v1/chat/completions",
        headers={"Authorization": "Bearer sk-alice"},
        json={
            "model": "sim-hidden",
            "messages": [{"role": "user", "content": f"q {index}"}],
            "stream": index % 2 == 1,
        },
        timeout=30,
    )
    text = response.text
    return {
        "status": response.status_code,
        "id": response.headers.get("x-request-id"),
        "receipt": '"receipt"' in text,
        "refused": response.status_code == 503 and "ledger_unavailable" in text,
        "text": text,
    }


def test_ledger_database_down_refuses_work(tmp_path: Path, postgres: PostgresServer) -> None:
    config = sim_config(tmp_path, ledger={"url": postgres.url}, audit={"embeddings": "off"})
    with GatewayServer(config) as server:
        before = [_ask(server, n) for n in range(6)]
        assert all(a["status"] == 200 and a["receipt"] for a in before), before
        postgres.stop()
        TALLY.fault("ledger database down")
        down = [_ask(server, 100 + n) for n in range(6)]
        for answer in down:  # never served without a record; no 500 either
            assert answer["status"] in (200, 503) and "Traceback" not in answer["text"], answer
            assert answer["refused"] or (answer["status"] == 200 and "error" in answer["text"])
            assert not answer["receipt"], answer
        assert sum(a["refused"] for a in down) >= 5, down
        TALLY.expected_errors += len(down)
        postgres.start()
        back: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not (back and back[-1]["receipt"]) and time.monotonic() < deadline:
            back.append(_ask(server, 200 + len(back)))
            time.sleep(0.2)
        assert back[-1]["status"] == 200 and back[-1]["receipt"], back[-1]
        TALLY.expected_errors += len(back) - 1
        records = server.records()
        keys = server.runtime.recorder.keyring.public_keys
        failures = server.runtime.metrics.registry.get_sample_value(
            "fairgate_ledger_append_failures_total"
        )
        assert failures is not None and failures >= 1  # what an operator alerts on
    report = verify_export((jsonl_line(r) for r in records), keys)
    assert report.ok, report.summary()
    TALLY.records_verified += len(records)
    ids = {r["request_id"] for r in records}
    served = [a for a in before + back if a["status"] == 200]
    assert all(a["id"] in ids for a in served)
    assert len(ids) == len(records)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_a_request_in_flight_when_the_ledger_goes_ends_without_a_receipt(
    tmp_path: Path, postgres: PostgresServer, stream: bool
) -> None:
    """A whole answer is withheld (503). A stream's tokens already went out and cannot be
    called back: it ends with the ledger error instead of its receipt and [DONE]."""
    config = sim_config(tmp_path, ledger={"url": postgres.url}, audit={"embeddings": "off"})
    body = {"model": "sim-slow", "messages": [{"role": "user", "content": "long"}]}
    headers = {"Authorization": "Bearer sk-alice"}
    with (
        GatewayServer(config) as server,
        httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http,
    ):
        TALLY.requests += 1
        if stream:
            with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
                lines = r.iter_lines()
                head = [next(lines) for _ in range(3)]
                postgres.stop()
                TALLY.fault("ledger database down mid-request")
                text = "\n".join(head + list(lines))
            status = r.status_code
        else:
            timer = threading.Timer(1.0, postgres.stop)
            timer.start()
            TALLY.fault("ledger database down mid-request")
            response = http.post("/v1/chat/completions", json=body)
            timer.join()
            status, text = response.status_code, response.text
    TALLY.expected_errors += 1
    assert "receipt" not in text and "[DONE]" not in text, text[-500:]
    assert "ledger_unavailable" in text and "Traceback" not in text, text[-500:]
    assert status == (200 if stream else 503)  # a stream's status went out with its first byte
