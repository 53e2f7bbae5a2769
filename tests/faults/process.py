"""A real ``fairgate serve`` process on a loopback port, its log kept in memory, and the
ledger checked through the CLI afterwards (export, public key, verify)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

FAIRGATE = [sys.executable, "-m", "fairgate.gateway.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp: Path, **overrides: Any) -> Path:
    config: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "admin_key": "admin-secret",
        "tenants": [
            {"name": "alice", "api_keys": ["sk-alice"]},
            {"name": "bob", "api_keys": ["sk-bob"]},
        ],
        "models": [
            {
                "name": "sim",
                "provider": "sim",
                "reasoning": "hidden",
                "replicas": 2,
                "sim": {"seconds_per_token": 0.001},
            }
        ],
        "audit": {"embeddings": "off"},
    }
    config.update(overrides)
    path = tmp / "fairgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class GatewayProcess:
    def __init__(self, config: Path, port: int, preexec: Callable[[], None] | None = None) -> None:
        self.config, self.port, self.preexec = config, port, preexec
        self.log: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60) -> GatewayProcess:
        # The log goes through a pipe: a file-size limit on the process must hit the ledger only.
        self.process = subprocess.Popen(
            [*FAIRGATE, "serve", "--config", str(self.config), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=self.preexec,
        )
        threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("gateway did not become ready:\n" + "".join(self.log[-40:]))

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.log.append(line)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                raise

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def cli(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(config)] if config is not None else []
    return subprocess.run([*FAIRGATE, *args, *extra], capture_output=True, text=True, timeout=60)


def exported_records(config: Path, tmp: Path) -> list[dict[str, Any]]:
    """The whole ledger through ``fairgate ledger export``, checked by ``fairgate ledger
    verify`` against the gateway's own public key."""
    export, pem = tmp / "ledger.jsonl", tmp / "public.pem"
    done = cli("ledger", "export", "--out", str(export), config=config)
    assert done.returncode == 0, done.stderr
    public = cli("ledger", "public-key", config=config)
    assert public.returncode == 0, public.stderr
    pem.write_text(public.stdout)
    verified = cli("ledger", "verify", str(export), "--public-key", str(pem))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    return [json.loads(line) for line in export.read_text().splitlines() if line.strip()]


def metric_total(url: str, name: str) -> float:
    """The sum of a metric's samples on the gateway's /metrics page."""
    text = httpx.get(url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
