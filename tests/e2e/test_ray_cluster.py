"""A Ray cluster that outlives a gateway: its named replica actors are kept and adopted by the
next gateway, engine and all."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fairgate.gateway.config import parse_config
from fairgate.replicas.vllm_process import free_port
from tests.e2e.conftest import (
    marked_env,
    marked_processes,
    new_mark,
    wait_for,
    wait_none_marked,
)
from tests.e2e.tiny_cluster import (
    START_TIMEOUT_S,
    ask,
    config_data,
    replicas_of,
    wait_healthy,
)
from tests.support.gateway_server import GatewayServer

pytestmark = pytest.mark.e2e


def start_ray_head(tmp_root: Path, mark: str) -> str:
    port = free_port()
    temp_dir = ray_temp_dir(mark)
    ray = str(Path(sys.executable).with_name("ray"))
    subprocess.run(
        [ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=marked_env(mark, ray_env()), check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return f"127.0.0.1:{port}"


def ray_temp_dir(mark: str) -> Path:
    return Path("/tmp") / f"fgray-{mark[:8]}"  # short: Ray puts unix sockets in it


def ray_env() -> dict[str, str]:
    # Ray 2.60 turns token authentication on for clusters that `ray start` creates, but not
    # for drivers that are not told about it; this throw-away cluster listens on loopback.
    return {**os.environ, "RAY_AUTH_MODE": "disabled"}


def stop_marked(mark: str) -> None:
    """Stop the processes of our Ray head only (``ray stop`` would stop everyone's)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):  # what `ray stop` does, for our pids
        procs = marked_processes(mark)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        psutil.wait_procs(procs, timeout=10)


def test_a_new_gateway_adopts_the_replicas_left_on_a_cluster(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    mark = new_mark()
    try:
        address = start_ray_head(tmp_path, mark)
        data = config_data(tmp_path / "data", tiny_model_dir, 1)
        data["ray"] = {"address": address, "keep_replicas": True}
        with GatewayServer(parse_config(data)) as server:
            wait_healthy(server, {"tiny-0"}, START_TIMEOUT_S)
            first = replicas_of(server)["tiny-0"]
            assert not first["adopted"] and first["engine"]["node_ip"] != ""
            assert ask(server, "hello")[0] == "tiny-0"
        assert psutil.pid_exists(first["engine"]["pid"])  # kept running on the cluster

        data["ray"] = {"address": address, "keep_replicas": False}
        started = time.monotonic()
        with GatewayServer(parse_config(data)) as server:
            wait_healthy(server, {"tiny-0"}, 60)
            adopted_s = time.monotonic() - started
            second = replicas_of(server)["tiny-0"]
            assert second["adopted"]
            assert second["engine"]["pid"] == first["engine"]["pid"]
            assert ask(server, "hello again")[0] == "tiny-0"
        print(f"\nadopted a live replica in {adopted_s:.1f} s")
        wait_for(lambda: not psutil.pid_exists(first["engine"]["pid"]), 30, "engine stopped")
    finally:
        stop_marked(mark)
        wait_none_marked(mark)
        shutil.rmtree(ray_temp_dir(mark), ignore_errors=True)
