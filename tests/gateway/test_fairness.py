"""A flooding tenant through the real gateway, with default scheduler settings, in front of
``sim`` engines that are full (2 batch slots each, their own FIFO past them): the light
tenants keep their share under DLPM/D²LPM (the defaults), and lose it under FCFS. The flood
has ten times the light tenants' requests in flight, as in bench.peers.

Each light tenant has 4 clients, so that it asks for more than an equal share (4/3 of the 4
slots): fairness is a promise to backlogged tenants. With 2 clients (this test before
2026-12-02) a light tenant cannot be backlogged: the sim's identical jobs free a replica's two
slots together every 0.32 s, a light client's next request comes a few ms after its answer,
by when the slot went to a queued flood job, so each light request waited one whole job
whatever the order (measured: 0.56 of an equal share under DLPM, 0.2 under FCFS). The 10 s
window keeps the first second, before admission has seen the engines fill, from dominating."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway_server import GatewayServer, sim_config

FLOOD, LIGHT, WINDOW = 40, 4, 10.0
TENANTS = ("flood", "light-a", "light-b")


def _config(data_dir: Path, scheduler: dict[str, Any] | None):  # type: ignore[no-untyped-def]
    return sim_config(
        data_dir,
        tenants=[{"name": n, "api_keys": [f"sk-{n}"]} for n in TENANTS],
        models=[
            {
                "name": "sim",
                "provider": "sim",
                "reasoning": "hidden",
                "replicas": 2,
                "sim": {
                    "max_num_seqs": 2,
                    "seconds_per_token": 0.02,
                    "reasoning_tokens": 4,
                    "content_tokens": 12,
                },
            }
        ],
        **({} if scheduler is None else {"scheduler": scheduler}),
    )


async def _send(api: openai.AsyncOpenAI, tenant: str, index: int) -> None:
    system = f"You serve {tenant}. " + " ".join(f"{tenant}{i}" for i in range(40))
    await api.chat.completions.create(
        model="sim",
        messages=[
            {"role": "system", "content": system},
            {"role": "user", "content": f"question {index}"},
        ],
    )


async def _flood(base_url: str) -> float:
    """Closed-loop clients, as in bench.peers' flood: ``flood`` keeps FLOOD requests in
    flight, each light tenant LIGHT, for WINDOW seconds. Returns the window's end (epoch s)."""
    apis = {  # one client per tenant, made before the clock starts
        t: openai.AsyncOpenAI(
            base_url=base_url + "/v1", api_key=f"sk-{t}", max_retries=0, timeout=120
        )
        for t in TENANTS
    }
    end = time.time() + WINDOW

    async def client(tenant: str, c: int) -> None:
        i = 0
        while time.time() < end:
            await _send(apis[tenant], tenant, c * 1000 + i)
            i += 1

    clients = [client("flood", c) for c in range(FLOOD)]
    clients += [client(t, c) for t in TENANTS[1:] for c in range(LIGHT)]
    await asyncio.gather(*clients)
    return end


def _shares(server: GatewayServer, end: float) -> dict[str, float]:
    """Each tenant's generated tokens in the window / an equal share."""
    tokens = dict.fromkeys(TENANTS, 0)
    for record in server.records():
        finished = datetime.fromisoformat(record["finished_at"].replace("Z", "+00:00"))
        if finished.timestamp() <= end:
            tokens[record["tenant"]] += record["usage"]["completion_tokens"]
    mean = sum(tokens.values()) / len(tokens)
    return {t: n / mean for t, n in tokens.items()}


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "scheduler",
    [
        None,
        {"policy": "fcfs", "router": "round_robin"},
    ],
)
def test_flooding_tenant_with_full_engines(tmp_path: Path, scheduler: dict[str, Any] | None):
    with GatewayServer(_config(tmp_path, scheduler)) as server:
        end = asyncio.run(_flood(server.base_url))
        assert all(r["status"] == "ok" for r in server.records())
        shares = _shares(server, end)
    light = [shares["light-a"], shares["light-b"]]
    if scheduler is None:  # the defaults: dlpm + d2lpm, cluster-level credit
        # measured 2026-12-08: 16 runs passed, 8 of them read: light 0.96-0.99, flood
        # 1.03-1.05; before DLPM's locality bound, 2 runs in 34 and one CI run starved a
        # light tenant sent to the other replica (0.56, 0.80; test_cluster_credit.py)
        assert min(light) >= 0.85, shares
        assert shares["flood"] <= 1.25, shares
    else:
        assert max(light) < 0.5, shares


def test_routing_reasons_are_exported(tmp_path: Path) -> None:
    with GatewayServer(_config(tmp_path, None)) as server:

        async def two() -> None:
            api = openai.AsyncOpenAI(
                base_url=server.base_url + "/v1", api_key="sk-flood", max_retries=0
            )
            for i in range(2):
                await _send(api, "flood", i)

        asyncio.run(two())
        text = httpx.get(server.base_url + "/metrics").text
    assert 'fairgate_scheduler_route_reasons_total{reason="place"} 1.0' in text, text[:400]
    assert 'fairgate_scheduler_route_reasons_total{reason="locality"} 1.0' in text
