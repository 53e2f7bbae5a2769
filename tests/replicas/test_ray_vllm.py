"""The gateway side of a Ray replica, without a Ray cluster: naming, and health verdicts
from a stand-in actor and a stand-in engine."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ray.exceptions import ActorDiedError

from fairgate.replicas import ray_vllm
from fairgate.replicas.engine_host import EngineState, EngineStatus
from fairgate.replicas.ray_vllm import (
    ActorOptions,
    RayVllmReplica,
    actor_name,
    parse_actor_name,
    replica_id,
)
from fairgate.replicas.vllm_process import VllmSpec, free_port

FAKE = Path(__file__).with_name("fake_vllm.py")


def test_actor_names_round_trip() -> None:
    assert actor_name("smollm2", 0) == "fairgate/smollm2/0"
    assert parse_actor_name("fairgate/smollm2/0") == ("smollm2", 0)
    assert parse_actor_name(actor_name("org/model", 12)) == ("org/model", 12)


@pytest.mark.parametrize(
    "name", ["smollm2/0", "fairgate/smollm2", "fairgate//1", "fairgate/m/x", "other/m/1"]
)
def test_foreign_names_are_not_ours(name: str) -> None:
    assert parse_actor_name(name) is None


def test_replica_ids() -> None:
    assert replica_id("tiny", 1) == "tiny-1"


# -- health, with a stand-in actor and a stand-in engine ----------------------------------


class FakeMethod:
    def __init__(self, result: Callable[[], Awaitable[Any]]) -> None:
        self.result = result

    def remote(self) -> Awaitable[Any]:
        return self.result()


class FakeActor:
    def __init__(self, status: Callable[[], Awaitable[Any]]) -> None:
        self.status = FakeMethod(status)
        self.start = FakeMethod(_none)


async def _none() -> None:
    return None


def _status(state: EngineState, url: str | None) -> EngineStatus:
    return EngineStatus(
        state=state, url=url, pid=None, restarts=0, starts=1, startup_s=1.0, warmup_s=0.1,
        running_since=None, error=None, failed_starts=0, next_retry_at=None, log_path=None,
        node_ip="127.0.0.1", cores="0", spec_key="k", max_model_len=2048,
    )  # fmt: skip


@pytest.fixture
def engine_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FAKE), str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait()


def _replica() -> RayVllmReplica:
    return RayVllmReplica("tiny", 0, VllmSpec(model="m", served_model_name="tiny"), ActorOptions())


async def test_healthy_when_the_actor_runs_an_engine_that_answers(engine_url: str) -> None:
    replica = _replica()
    replica._actor = FakeActor(lambda: _async(_status(EngineState.RUNNING, engine_url)))
    assert await replica.check_health() is True
    assert replica.url == engine_url and replica.info()["engine"]["state"] == "running"
    replica._actor = FakeActor(lambda: _async(_status(EngineState.RESTARTING, None)))
    assert await replica.check_health() is False
    await replica.aclose()


async def test_slow_probes_keep_the_last_verdict_for_a_while(
    engine_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray_vllm, "STATUS_TIMEOUT_S", 0.05)
    replica = _replica()
    replica._actor = FakeActor(lambda: _async(_status(EngineState.RUNNING, engine_url)))
    assert await replica.check_health() is True

    async def slow() -> Any:
        await asyncio.sleep(1)

    replica._actor = FakeActor(slow)
    verdicts = [await replica.check_health() for _ in range(ray_vllm.SLOW_PROBES + 1)]
    assert verdicts == [True] * ray_vllm.SLOW_PROBES + [False]
    await replica.aclose()


async def test_a_dead_engine_url_is_unhealthy_at_once() -> None:
    replica = _replica()
    dead = f"http://127.0.0.1:{free_port()}"
    replica._actor = FakeActor(lambda: _async(_status(EngineState.RUNNING, dead)))
    assert await replica.check_health() is False
    await replica.aclose()


async def test_a_gone_actor_is_created_again(monkeypatch: pytest.MonkeyPatch) -> None:
    replica = _replica()
    launched: list[bool] = []
    monkeypatch.setattr(replica, "launch", lambda: launched.append(True))

    async def gone() -> Any:
        raise ActorDiedError()

    replica._actor = FakeActor(gone)
    assert await replica.check_health() is False
    assert launched == [True] and replica._actor is None
    await replica.aclose()


async def _async(value: Any) -> Any:
    return value
