"""The engines' load goes to admission directly; telemetry only reads what was seen."""

from __future__ import annotations

import httpx

from fairgate.gateway.engine_watch import EngineWatch
from fairgate.replicas.base import EngineLoad

URLS = ["http://up", "http://down", "http://garbage", None]

METRICS = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 5.0
"""


def transport(request: httpx.Request) -> httpx.Response:
    if request.url.host == "up":
        return httpx.Response(200, text=METRICS)
    if request.url.host == "garbage":
        return httpx.Response(200, text="{not prometheus")
    return httpx.Response(503)


class Engine:
    def __init__(self, url: str | None) -> None:
        self.url = url

    async def load(self) -> EngineLoad:
        return EngineLoad(running=1, waiting=2)


async def test_load_is_fed_and_readings_follow_the_replicas() -> None:
    targets = [("m", f"m-{i}", Engine(url)) for i, url in enumerate(URLS)]
    loads: list[tuple[str, int, int]] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(transport))
    watch = EngineWatch(lambda: targets, lambda *load: loads.append(load), client=client)
    await watch.refresh()
    assert sorted(loads) == [("m-0", 3, 5), ("m-3", 1, 2)]
    assert "m-3" not in watch.readings  # no engine metrics to export: the sim reports load
    reading = watch.readings["m-0"].metrics
    assert reading is not None and reading.get("fairgate_engine_requests_waiting") == 5
    assert watch.readings["m-1"].metrics is None and watch.readings["m-2"].metrics is None

    targets.pop(0)
    loads.clear()
    await watch.refresh()
    assert "m-0" not in watch.readings and loads == [("m-3", 1, 2)]
    await watch.stop()
    assert client.is_closed


def test_it_ticks_quickly_only_while_a_replica_is_read_in_process() -> None:
    targets = [("m", "m-0", Engine("http://up"))]
    watch = EngineWatch(lambda: targets, lambda *load: None, interval=5.0, local_interval=0.25)
    assert watch._next_interval() == 5.0  # every engine behind a URL: its metrics, each 5 s
    targets.append(("m", "m-1", Engine(None)))
    assert watch._next_interval() == 0.25
    targets.clear()
    assert watch._next_interval() == 0.25  # none known yet: the first may be in-process


async def test_an_engine_a_probe_waits_on_is_read_again_at_the_quick_interval() -> None:
    targets = [("m", "m-0", Engine("http://up")), ("m", "m-1", Engine("http://up"))]
    read: list[str] = []
    probing = {"m-0"}

    def on_load(replica_id: str, running: int, waiting: int) -> bool:
        read.append(replica_id)
        return replica_id in probing

    client = httpx.AsyncClient(transport=httpx.MockTransport(transport))
    watch = EngineWatch(lambda: targets, on_load, interval=5.0, local_interval=0.25, client=client)
    await watch.refresh()
    assert sorted(read) == ["m-0", "m-1"]
    assert watch._next_interval() == 0.25  # m-0's probe waits for the engine's answer
    read.clear()
    probing.clear()
    await watch.refresh(remote=False)
    assert read == ["m-0"]  # only the probed engine, before the 5 s reading
    assert watch._next_interval() == 5.0  # answered: back to the slow reading
    read.clear()
    await watch.refresh(remote=False)
    assert read == []
    await watch.stop()
