"""The engine supervisor, with a stand-in server instead of vLLM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fairgate.replicas import engine_host
from fairgate.replicas.engine_host import EngineHost, EngineState, Placement, spec_key
from fairgate.replicas.vllm_process import VllmSpec, group_pids

FAKE = Path(__file__).with_name("fake_vllm.py")
SPEC = VllmSpec(model="/nonexistent/model", served_model_name="fake")


def fake_command(*extra: str) -> Callable[..., list[str]]:
    def command(spec: VllmSpec, *, port: int, host: str, cpu_build: bool) -> list[str]:
        return [sys.executable, str(FAKE), str(port), *extra]

    return command


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_host, "BACKOFF_FIRST_S", 0.05)
    monkeypatch.setattr(engine_host, "BACKOFF_CAP_S", 0.2)


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[EngineHost]:
    engine = EngineHost(
        SPEC,
        Placement(index=1, log_dir=str(tmp_path)),
        cpu_build=True,
        available_cores=[0, 1],
        command=fake_command("--children", "1"),
    )
    yield engine
    await engine.stop()


async def wait_state(engine: EngineHost, state: EngineState, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while engine.state is not state:
            await asyncio.sleep(0.05)


async def test_starts_warms_up_and_reports_its_url(host: EngineHost) -> None:
    assert host.status().state is EngineState.IDLE
    await host.start()
    await wait_state(host, EngineState.RUNNING)
    status = host.status()
    assert status.url and status.url.startswith("http://127.0.0.1:")
    assert status.pid is not None and status.restarts == 0
    assert status.max_model_len == 1234
    assert status.cores == "1"  # replica 1 of a CPU build: the second core
    assert status.startup_s is not None and status.warmup_s is not None
    async with httpx.AsyncClient() as client:
        assert (await client.get(status.url + "/health")).status_code == 200


async def test_a_killed_engine_is_restarted_on_a_new_port(host: EngineHost) -> None:
    await host.start()
    await wait_state(host, EngineState.RUNNING)
    first = host.status()
    assert first.pid is not None
    orphans = [pid for pid in group_pids(first.pid) if pid != first.pid]
    os.kill(first.pid, signal.SIGKILL)
    await wait_state(host, EngineState.RESTARTING, 5)
    assert "exited with code -9" in (host.status().error or "")
    await wait_state(host, EngineState.RUNNING)
    second = host.status()
    assert second.restarts == 1 and second.pid != first.pid and second.url != first.url
    assert orphans and group_pids(first.pid) == []  # the old group is gone, orphans too


async def test_stop_leaves_nothing_running(host: EngineHost) -> None:
    await host.start()
    await wait_state(host, EngineState.RUNNING)
    pid = host.status().pid
    assert pid is not None
    await host.stop()
    assert host.status().state is EngineState.STOPPED and host.status().url is None
    assert group_pids(pid) == []


async def test_an_engine_that_cannot_start_is_retried_with_growing_backoff(tmp_path: Path) -> None:
    engine = EngineHost(
        SPEC,
        Placement(index=0, log_dir=str(tmp_path)),
        cpu_build=False,
        command=fake_command("--exit-after", "0"),
    )
    await engine.start()
    deadline = time.monotonic() + 60
    while engine.status().failed_starts < 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    status = engine.status()
    assert status.failed_starts >= 5 and status.starts >= 5  # never given up
    assert status.state in (EngineState.RESTARTING, EngineState.STARTING)
    assert status.url is None and "exited with code 3" in (status.error or "")
    assert status.cores is None  # no pinning on a GPU build
    while engine.status().next_retry_at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    waiting = engine.status()
    assert waiting.next_retry_at is not None
    assert 0 < waiting.next_retry_at - time.time() <= engine_host.BACKOFF_CAP_S
    await engine.stop()
    assert engine.status().state is EngineState.STOPPED


def test_backoff_doubles_up_to_its_cap() -> None:
    first, cap = engine_host.BACKOFF_FIRST_S, engine_host.BACKOFF_CAP_S  # patched small here
    delays = [engine_host.backoff_s(n) for n in range(1, 14)]
    assert delays[:3] == [first, 2 * first, 4 * first]
    assert delays == sorted(delays) and delays[-1] == cap


def test_spec_key_changes_with_what_changes_the_engine() -> None:
    placement = Placement(index=0)
    key = spec_key(SPEC, placement)
    assert key == spec_key(SPEC, Placement(index=3))  # the index is the actor's name
    changed: list[Any] = [
        VllmSpec(model="other", served_model_name="fake"),
        VllmSpec(model=SPEC.model, served_model_name="fake", engine_args={"max_num_seqs": 4}),
        VllmSpec(model=SPEC.model, served_model_name="fake", reasoning_parser="qwen3"),
    ]
    assert all(spec_key(spec, placement) != key for spec in changed)
    assert spec_key(SPEC, Placement(index=0, cores_per_replica=2)) != key
