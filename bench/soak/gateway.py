"""The gateway under soak: a real ``fairgate serve`` process, its config, and what the soak
reads from it (resident memory, open file descriptors, the scheduler's queues)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

FAIRGATE = [sys.executable, "-m", "fairgate.gateway.cli"]


@dataclass(frozen=True)
class Shape:
    """The workload's tenants and the engines' capacity."""

    tenants: int = 50
    clients_per_tenant: int = 2
    heavy_tenants: int = 5  # these run 4x the clients, past their queue bound
    max_queued_per_tenant: int = 4
    replicas: int = 2
    max_num_seqs: int = 4
    seconds_per_token: float = 0.004
    reasoning_tokens: int = 6
    content_tokens: int = 14
    # OpenAI-compatible upstreams to serve from instead of the sim engines (provider openai).
    upstreams: tuple[str, ...] = ()

    def tenant_names(self) -> list[str]:
        return [f"t{n:02d}" for n in range(self.tenants)]

    def clients(self, index: int) -> int:
        return self.clients_per_tenant * (4 if index < self.heavy_tenants else 1)


def write_config(workdir: Path, shape: Shape) -> Path:
    sim = {
        "max_num_seqs": shape.max_num_seqs,
        "seconds_per_token": shape.seconds_per_token,
        "reasoning_tokens": shape.reasoning_tokens,
        "content_tokens": shape.content_tokens,
    }
    config: dict[str, Any] = {
        "data_dir": str(workdir / "data"),
        "tenants": [{"name": n, "api_keys": [f"sk-{n}"]} for n in shape.tenant_names()],
        "models": [_model(shape, sim)],
        "scheduler": {"max_queued_per_tenant": shape.max_queued_per_tenant},
        "audit": {"embeddings": "off"},
    }
    path = workdir / "fairgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _model(shape: Shape, sim: dict[str, Any]) -> dict[str, Any]:
    if shape.upstreams:
        return {
            "name": "sim",
            "provider": "openai",
            "endpoints": list(shape.upstreams),
            "reasoning": "hidden",
        }
    return {
        "name": "sim",
        "provider": "sim",
        "reasoning": "hidden",
        "replicas": shape.replicas,
        "sim": sim,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = config.parent / "gateway.log"
        command = [*FAIRGATE, "serve", "--config", str(config), "--port", str(self.port)]
        command += ["--log-level", "warning"]
        self.process = subprocess.Popen(
            command, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        self.ps = psutil.Process(self.process.pid)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the gateway did not start:\n" + self.log.read_text()[-3000:])

    def rss_bytes(self) -> int:
        return int(self.ps.memory_info().rss)

    def open_fds(self) -> int:
        return int(self.ps.num_fds())

    def connections_to(self, urls: tuple[str, ...]) -> int:
        """Open TCP connections to these upstreams: the provider's keep-alive pool."""
        ports = {int(url.rsplit(":", 1)[1].split("/")[0]) for url in urls}
        return sum(
            1 for c in self.ps.net_connections(kind="tcp") if c.raddr and c.raddr.port in ports
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*FAIRGATE, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    def verified_records(self, workdir: Path) -> tuple[int, str]:
        """Export the ledger and verify it with the CLI: (records, the verifier's summary)."""
        export, pem = workdir / "ledger.jsonl", workdir / "public.pem"
        done = self.cli("ledger", "export", "--out", str(export))
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        pem.write_text(self.cli("ledger", "public-key").stdout)
        verified = subprocess.run(
            [*FAIRGATE, "ledger", "verify", str(export), "--public-key", str(pem)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if verified.returncode != 0:
            raise RuntimeError(verified.stdout + verified.stderr)
        with export.open() as lines:
            ids = [json.loads(line)["request_id"] for line in lines if line.strip()]
        if len(ids) != len(set(ids)):
            raise RuntimeError("a request has two ledger records")
        return len(ids), verified.stdout.strip()


def queued_jobs(url: str) -> dict[str, float]:
    """``fairgate_tenant_queued_jobs`` per tenant, from /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    queued: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("fairgate_tenant_queued_jobs{"):
            labels, value = line.rsplit(" ", 1)
            tenant = labels.split('tenant="', 1)[1].split('"', 1)[0]
            queued[tenant] = float(value)
    return queued
