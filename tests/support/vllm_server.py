"""Run a real vLLM OpenAI server in a subprocess for tests: a thin wrapper over the product's
launcher, ``replicas.vllm_process`` (the same command line, environment and process-group
handling the Ray replicas use).

The server runs in its own session (process group), so stopping it ends the API server and its
engine-core child together; nothing is left behind.

    with start_vllm_server(model_dir, log_path=tmp_path / "vllm.log") as server:
        httpx.post(server.url("/v1/chat/completions"), json={...})
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from fairgate.replicas.vllm_process import (
    Probe,
    VllmProcess,
    VllmSpec,
    free_port,
    group_pids,
    log_tail,
    vllm_command,
    vllm_env,
)

__all__ = [
    "DEFAULT_KV_CACHE_BYTES",
    "DEFAULT_MAX_MODEL_LEN",
    "VllmServer",
    "VllmStartError",
    "free_port",
    "group_pids",
    "log_tail",
    "start_vllm_server",
]

DEFAULT_KV_CACHE_BYTES = "256M"
DEFAULT_MAX_MODEL_LEN = 2048
DEFAULT_START_TIMEOUT_S = 240.0


class VllmStartError(RuntimeError):
    """The server exited or did not become healthy in time; the message holds its log tail."""


@dataclass
class VllmServer:
    process: VllmProcess
    model_name: str
    startup_s: float = 0.0

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.process.proc

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    @property
    def base_url(self) -> str:
        return self.process.base_url

    def url(self, path: str) -> str:
        return self.base_url + path

    def rss_bytes(self) -> int:
        """Resident memory of every process in the server's process group."""
        return self.process.rss_bytes()

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left."""
        self.process.stop(timeout_s)

    def __enter__(self) -> VllmServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


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
    spec = VllmSpec(
        model=str(model_dir),
        served_model_name=name,
        reasoning_parser=reasoning_parser,
        max_model_len=max_model_len,
        engine_args={"kv_cache_memory_bytes": kv_cache_bytes, "enforce_eager": True},
    )
    command = vllm_command(spec, port=port) + list(extra_args)
    env = vllm_env(cpu_cores=None if cpu_core is None else str(cpu_core))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    start = time.monotonic()
    server = VllmServer(VllmProcess(command, env=env, port=port, log_path=log_path), name)
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
        probe = server.process.probe()
        if probe is Probe.EXITED:
            code = server.process.returncode()
            raise VllmStartError(_failure(server, f"vLLM exited with code {code}"))
        if probe is Probe.HEALTHY:
            return
        time.sleep(0.5)
    raise VllmStartError(_failure(server, f"vLLM not healthy after {timeout_s:.0f} s"))


def _failure(server: VllmServer, reason: str) -> str:
    return f"{reason} (port {server.port}); log {server.log_path}:\n{log_tail(server.log_path)}"
