"""An engine that cannot start is shown, with its reason, and retried with backoff."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fairgate.gateway.config import parse_config
from tests.e2e.conftest import marking_this_process, wait_none_marked
from tests.e2e.tiny_cluster import config_data
from tests.support.gateway_server import GatewayServer

pytestmark = pytest.mark.e2e


def broken_copy(model_dir: Path, into: Path) -> Path:
    """The tiny model whose weights file is cut short: its config and tokenizer still load,
    so the start-up checks pass and the engine itself fails."""
    broken = into / "tiny-broken"
    shutil.copytree(model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    return broken


def readyz(server: GatewayServer) -> tuple[int, dict[str, Any]]:
    response = httpx.get(server.base_url + "/readyz", timeout=10)
    return response.status_code, response.json()


@pytest.mark.timeout(900)
def test_readyz_names_the_failing_replica_and_retries_go_on(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model_dir = broken_copy(tiny_model_dir, tmp_path)
    with marking_this_process() as mark:
        config = parse_config(config_data(tmp_path / "data", model_dir, 1))
        with GatewayServer(config) as server:
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                code, body = readyz(server)
                assert code == 503
                replica = body["models"].get("tiny", {}).get("replicas", {}).get("tiny-0", {})
                if replica.get("error"):
                    seen.append({**replica, "reasons": body["reasons"], "at": time.time()})
                if seen and seen[-1].get("failed_starts", 0) >= 2 and seen[-1].get("next_retry_at"):
                    break
                time.sleep(1)
    wait_none_marked(mark)
    assert seen, "readyz never named an engine error"
    last = seen[-1]
    assert last["failed_starts"] >= 2, last  # tried again after the first failure
    assert last["engine"] == "restarting" and last["state"] == "unhealthy"
    assert last["next_retry_at"] > last["at"] - 1
    assert any("tiny-0 is restarting (" in reason for reason in last["reasons"]), last["reasons"]
    assert last["log_path"].endswith(".log")
