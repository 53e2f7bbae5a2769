"""A real vLLM engine started the way a Ray actor starts it (``VllmEngineActor`` with its key,
run here without Ray) refuses ``/v1`` without the key and serves the gateway, which sends it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from fairgate.replicas.engine_host import EngineState, Placement
from fairgate.replicas.ray_vllm import VllmEngineActor
from fairgate.replicas.vllm_process import VllmSpec

pytestmark = pytest.mark.e2e
KEY = "sk-engine-e2e-0123456789abcdefghijklmnopqrstuv"


@pytest.mark.timeout(600)
async def test_a_real_engine_requires_its_actors_key(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)  # restored after the actor sets it
    spec = VllmSpec(
        model=str(tiny_model_dir),
        served_model_name="tiny",
        reasoning_parser="deepseek_r1",
        max_model_len=512,
    )
    actor = VllmEngineActor(spec, Placement(index=0, log_dir=str(tmp_path)), api_key=KEY)
    await actor.start()
    try:
        deadline = time.monotonic() + 480
        status = await actor.status()
        while status.state is not EngineState.RUNNING and time.monotonic() < deadline:
            assert status.state is not EngineState.FAILED, status.error
            await asyncio.sleep(0.5)
            status = await actor.status()
        assert status.state is EngineState.RUNNING and status.url, status.error
        async with httpx.AsyncClient(base_url=status.url, timeout=30) as client:
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/v1/models")).status_code == 401
            wrong = {"Authorization": "Bearer sk-not-the-key"}
            assert (await client.get("/v1/models", headers=wrong)).status_code == 401
            right = {"Authorization": f"Bearer {await actor.api_key()}"}
            models = await client.get("/v1/models", headers=right)
            assert models.status_code == 200 and models.json()["data"][0]["id"] == "tiny"
    finally:
        await actor.stop()
