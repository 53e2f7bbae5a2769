"""The engines' load goes to admission directly; telemetry only reads what was seen."""

from __future__ import annotations

import httpx

from fairgate.gateway.engine_watch import EngineWatch

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


async def test_load_is_fed_and_readings_follow_the_replicas() -> None:
    targets = [
        ("m", "m-0", "http://up"),
        ("m", "m-1", "http://down"),
        ("m", "m-2", "http://garbage"),
    ]
    loads: list[tuple[str, int, int]] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(transport))
    watch = EngineWatch(lambda: targets, lambda *load: loads.append(load), client=client)
    await watch.refresh()
    assert loads == [("m-0", 3, 5)]
    reading = watch.readings["m-0"].metrics
    assert reading is not None and reading.get("fairgate_engine_requests_waiting") == 5
    assert watch.readings["m-1"].metrics is None and watch.readings["m-2"].metrics is None

    targets.pop(0)
    await watch.refresh()
    assert "m-0" not in watch.readings and loads == [("m-0", 3, 5)]
    await watch.stop()
    assert client.is_closed
