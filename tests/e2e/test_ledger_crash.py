"""The ledger survives a SIGKILLed gateway: every answered request has its record, and the
chain still verifies after a restart (the real `fairgate` CLI, sim engine)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

pytestmark = pytest.mark.e2e
FAIRGATE = [sys.executable, "-m", "fairgate.gateway.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_config(tmp: Path, sync: str) -> Path:
    config = {
        "data_dir": str(tmp / "data"),
        "tenants": [
            {"name": "alice", "api_keys": ["sk-alice"]},
            {"name": "bob", "api_keys": ["sk-bob"]},
        ],
        "models": [
            {
                "name": "sim",
                "provider": "sim",
                "reasoning": "hidden",
                "sim": {"seconds_per_token": 0.001},
            }
        ],
        "scheduler": {"max_inflight_per_replica": 8},
        "ledger": {"sync": sync},
    }
    path = tmp / "fairgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [*FAIRGATE, "serve", "--config", str(config), "--port", str(port)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("gateway did not become ready:\n" + log.read_text()[-3000:])


def _load(port: int, answered: list[dict[str, Any]], stop: threading.Event, key: str) -> None:
    api = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=10
    )
    index = 0
    while not stop.is_set():
        index += 1
        try:
            reply = api.chat.completions.create(
                model="sim", messages=[{"role": "user", "content": f"{key} {index}"}]
            )
        except (openai.APIConnectionError, openai.APIStatusError, openai.APITimeoutError):
            return
        answered.append(
            {"receipt": reply.model_extra["receipt"], "usage": reply.usage.model_dump()}
        )


def _cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FAIRGATE, *args, "--config", str(config)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("sync", ["commit", "background"])
def test_sigkill_loses_no_answered_record(tmp_path: Path, sync: str) -> None:
    """``background`` too: its receipt promises survival of a process crash (README)."""
    config, port, log = _write_config(tmp_path, sync), _free_port(), tmp_path / "gateway.log"
    gateway = _start(config, port, log)
    answered: list[dict[str, Any]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_load, args=(port, answered, stop, key))
        for key in ("sk-alice", "sk-bob") * 3
    ]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    os.kill(gateway.pid, signal.SIGKILL)
    gateway.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    assert len(answered) > 20, "the load did not get going"

    gateway = _start(config, port, log)  # the chain resumes after the crash
    try:
        after = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-alice", max_retries=0
        ).chat.completions.create(
            model="sim", messages=[{"role": "user", "content": "after the crash"}]
        )
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=30)

    export, pem = tmp_path / "ledger.jsonl", tmp_path / "public.pem"
    assert _cli("ledger", "export", "--out", str(export), config=config).returncode == 0
    public = _cli("ledger", "public-key", config=config)
    assert public.returncode == 0
    pem.write_text(public.stdout)
    verified = subprocess.run(
        [*FAIRGATE, "ledger", "verify", str(export), "--public-key", str(pem)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr

    records = {}
    for line in export.read_text().splitlines():
        record = json.loads(line)
        assert record["request_id"] not in records, "a request was recorded twice"
        records[record["request_id"]] = record
    for item in answered:
        record = records[item["receipt"]["request_id"]]
        assert record["seq"] == item["receipt"]["seq"]
        assert record["signature"] == item["receipt"]["signature"]
        usage = record["usage"]
        assert usage["completion_tokens"] == item["usage"]["completion_tokens"]
        assert (
            usage["completion_tokens_details"]["reasoning_tokens"]
            == (item["usage"]["completion_tokens_details"]["reasoning_tokens"])
        )
    assert after.model_extra["receipt"]["request_id"] in records
