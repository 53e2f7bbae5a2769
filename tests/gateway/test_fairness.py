"""A flooding tenant through the real gateway (sim engine): DLPM keeps the others at their
share, FCFS lets the flood starve them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from tests.support.gateway_server import GatewayServer, sim_config

FLOOD, LIGHT = 100, 10
QUANTUM = 100
PROMPT_WEIGHT, COMPLETION_WEIGHT = 1, 2


def _config(data_dir: Path, policy: str):  # type: ignore[no-untyped-def]
    return sim_config(
        data_dir,
        tenants=[{"name": n, "api_keys": [f"sk-{n}"]} for n in ("flood", "light-a", "light-b")],
        models=[
            {
                "name": "sim",
                "provider": "sim",
                "reasoning": "hidden",
                "sim": {"seconds_per_token": 0.002},
            }
        ],
        scheduler={
            "policy": policy,
            "router": "d2lpm",
            "quantum": QUANTUM,
            "max_inflight_per_replica": 2,
            "max_queued_per_tenant": 200,
        },
    )


async def _send(base_url: str, tenant: str, index: int) -> None:
    api = openai.AsyncOpenAI(
        base_url=base_url + "/v1", api_key=f"sk-{tenant}", max_retries=0, timeout=120
    )
    content = f"{tenant} request {index}: " + " ".join(f"w{index}x{i}" for i in range(8))
    await api.chat.completions.create(model="sim", messages=[{"role": "user", "content": content}])


async def _flood(base_url: str) -> None:
    flood = [asyncio.create_task(_send(base_url, "flood", i)) for i in range(FLOOD)]
    await asyncio.sleep(0.3)  # the flood is queued first
    light = [
        asyncio.create_task(_send(base_url, t, i))
        for i in range(LIGHT)
        for t in ("light-a", "light-b")
    ]
    await asyncio.gather(*flood, *light)


def _service_while_backlogged(server: GatewayServer) -> tuple[dict[str, float], float]:
    """Weighted service per tenant over the first 3 * LIGHT completions (all backlogged)."""
    records = sorted(server.records(), key=lambda r: r["finished_at"])[: 3 * LIGHT]
    service: dict[str, float] = {"flood": 0.0, "light-a": 0.0, "light-b": 0.0}
    largest = 0.0
    for record in records:
        usage = record["usage"]
        uncached = usage["prompt_tokens"] - usage["prompt_tokens_details"]["cached_tokens"]
        cost = uncached * PROMPT_WEIGHT + usage["completion_tokens"] * COMPLETION_WEIGHT
        service[record["tenant"]] += cost
        largest = max(largest, cost)
    return service, largest


@pytest.mark.parametrize("policy", ["dlpm", "fcfs"])
def test_flooding_tenant(tmp_path: Path, policy: str) -> None:
    with GatewayServer(_config(tmp_path, policy)) as server:
        asyncio.run(_flood(server.base_url))
        assert len(server.records()) == FLOOD + 2 * LIGHT
        assert all(r["status"] == "ok" for r in server.records())
        service, largest = _service_while_backlogged(server)
    share = sum(service.values()) / 3
    bound = 2 * (largest + QUANTUM)  # DLPM: service difference ≤ 2(U + Q_u)
    light = service["light-a"], service["light-b"]
    if policy == "dlpm":
        assert all(abs(s - share) <= bound for s in light), (service, share, bound)
    else:
        assert all(s < share - bound for s in light), (service, share, bound)
