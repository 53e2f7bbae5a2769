"""The four policies on real engines, beside the simulator's prediction for each.

    python -m bench.fairness.real_engines [--duration 90] [--workdir DIR] [--only dlpm+d2lpm]

One closed-loop long-document workload (4 tenants x 2 documents of about 700 tokens, 3 clients
per tenant, 16 generated tokens per answer) runs through ``fairgate serve`` against 2
Ray-managed vLLM-CPU replicas of the embedded model (SmolLM2-135M-Instruct, one core each, 4
slots, a KV cache for about a third of the documents), once per policy, each on fresh engines
(empty caches). Prompts are token ids (``/v1/completions``), the same ids the simulator gets.

Measured, per policy: the engines' prefix hit rate (cached / prompt tokens, from the usage
vLLM reports into the ledger), generated tokens/s and requests/s within the window, and Jain's
index on the tenants' generated tokens. Then ``bench.sim`` runs the same requests with the same
scheduler configuration, on the calibrated CPU engine model with the measured cache size.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.sim import SimConfig, simulate
from bench.sim.engine import CostModel
from bench.sim.metrics import jain
from bench.sim.workload import Request
from bench.soak.gateway import Gateway
from fairgate.replicas.models import ensure_smollm2
from fairgate.replicas.torch_guard import hide_broken_extensions
from fairgate.scheduler import SchedulerConfig

COMBOS = [("fcfs", "round_robin"), ("vtc", "least_load"), ("lpm", "lpm"), ("dlpm", "d2lpm")]
TENANTS, DOCUMENTS, DOC_TOKENS, CLIENTS, OUTPUT = 4, 2, 700, 3, 16
KV_BYTES = 96 * 2**20  # about 2,000 tokens of SmolLM2's float32 KV: 3 of the 8 documents
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Measured:
    combo: str
    hit: float
    tokens_per_s: float
    requests_per_s: float
    jain: float
    requests: int


def workload(seed: int, per_client: int = 400) -> list[Request]:
    rng = random.Random(seed)
    requests = []
    for t in range(TENANTS):
        docs = [tuple(rng.randrange(32_000) for _ in range(DOC_TOKENS)) for _ in range(DOCUMENTS)]
        for c in range(CLIENTS):
            session = f"t{t}-c{c}"
            for k in range(per_client):
                question = tuple(rng.randrange(32_000) for _ in range(rng.randint(16, 32)))
                at = rng.uniform(0, 1) if k == 0 else 0.0
                prompt = rng.choice(docs) + question
                requests.append(
                    Request(f"{session}-{k}", f"t{t}", at, prompt, OUTPUT, None, session, 0.0)
                )
    return requests


def config(workdir: Path, model: Path, policy: str, router: str) -> Path:
    data: dict[str, Any] = {
        "data_dir": str(workdir / "data"),
        "tenants": [{"name": f"t{t}", "api_keys": [f"sk-t{t}"]} for t in range(TENANTS)],
        "scheduler": {"policy": policy, "router": router},
        "audit": {"embeddings": "off"},
        "models": [
            {
                "name": "smol",
                "provider": "vllm",
                "model": str(model),
                "tokenizer": str(model),
                "replicas": 2,
                "max_model_len": 1024,
                "engine_args": {"kv_cache_memory_bytes": KV_BYTES, "max_num_seqs": 4},
                "resources": {"num_cpus": 1},
            }
        ],
    }
    path = workdir / "fairgate.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _client(url: str, session: list[Request], until: float, out: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=url, timeout=300) as http:
        for request in session:
            if time.monotonic() >= until:
                return
            body = {
                "model": "smol",
                "prompt": list(request.prompt),
                "max_tokens": OUTPUT,
                "ignore_eos": True,
            }
            headers = {"Authorization": f"Bearer sk-{request.tenant}"}
            started = time.monotonic()
            response = http.post("/v1/completions", json=body, headers=headers)
            out.append({"tenant": request.tenant, "status": response.status_code,
                        "started": started, "ended": time.monotonic()})  # fmt: skip


def drive(url: str, requests: list[Request], duration: float) -> list[dict[str, Any]]:
    sessions: dict[str, list[Request]] = {}
    for request in requests:
        sessions.setdefault(request.session, []).append(request)
    until = time.monotonic() + duration
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=_client, args=(url, s, until, results)) for s in sessions.values()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def engines(gateway: Gateway, timeout_s: float = 600) -> list[dict[str, Any]]:
    """Both replicas' engines, once both are healthy (``/readyz`` needs only one)."""
    deadline = time.monotonic() + timeout_s
    while True:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        listed = httpx.get(gateway.url + "/admin/replicas", headers=headers, timeout=30).json()
        replicas = (listed["models"].get("smol") or {}).get("replicas", [])
        if len(replicas) == 2 and all(r["health"] == "healthy" for r in replicas):
            return [r["engine"] for r in replicas]
        if time.monotonic() > deadline:
            raise RuntimeError(f"the replicas did not both get healthy: {replicas}")
        time.sleep(1)


def cache_tokens(engine: dict[str, Any]) -> int:
    """The engine's KV cache in tokens, from vLLM's ``cache_config_info`` metric."""
    text = httpx.get(engine["url"] + "/metrics", timeout=30).text
    info = next(line for line in text.splitlines() if line.startswith("vllm:cache_config_info"))
    blocks = int(re.search(r'num_gpu_blocks="(\d+)"', info).group(1))  # type: ignore[union-attr]
    size = int(re.search(r'block_size="(\d+)"', info).group(1))  # type: ignore[union-attr]
    return blocks * size


ADMIN = "bench-admin"


def measure(workdir: Path, model: Path, combo: tuple[str, str], duration: float, seed: int,
            ) -> tuple[Measured, int]:  # fmt: skip
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    path = config(workdir, model, *combo)
    data = yaml.safe_load(path.read_text())
    data["admin_key"] = ADMIN
    path.write_text(yaml.safe_dump(data))
    gateway = Gateway(path)
    try:
        gateway.wait_ready(900)
        cache = cache_tokens(engines(gateway)[0])
        started = time.monotonic()
        results = drive(gateway.url, workload(seed), duration)
        wall = time.monotonic() - started
        records = _records(gateway)
    finally:
        gateway.stop()
    return summarize("+".join(combo), results, records, wall), cache


def _records(gateway: Gateway) -> list[dict[str, Any]]:
    out = gateway.config.parent / "ledger.jsonl"
    exported = gateway.cli("ledger", "export", "--out", str(out))
    if exported.returncode != 0:
        raise RuntimeError(f"ledger export failed: {exported.stderr}")
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def summarize(combo: str, results: list[dict[str, Any]], records: list[dict[str, Any]],
              wall: float) -> Measured:  # fmt: skip
    ok = [r for r in records if r["status"] == "ok"]
    prompt = sum(r["usage"]["prompt_tokens"] for r in ok)
    cached = sum(
        (r["usage"].get("prompt_tokens_details") or {}).get("cached_tokens", 0) for r in ok
    )
    per_tenant = {f"t{t}": 0 for t in range(TENANTS)}
    for r in ok:
        per_tenant[r["tenant"]] += r["usage"]["completion_tokens"]
    done = [r for r in results if r["status"] == 200]
    return Measured(
        combo,
        hit=cached / prompt if prompt else 0.0,
        tokens_per_s=sum(per_tenant.values()) / wall,
        requests_per_s=len(done) / wall,
        jain=jain(list(per_tenant.values())),
        requests=len(done),
    )


def predict(combo: tuple[str, str], cache: int, duration: float, seed: int) -> Measured:
    cost = CostModel(max_num_seqs=4, cache_tokens=cache)
    scheduler = SchedulerConfig(policy=combo[0], router=combo[1], cache_tokens_per_replica=cache)
    res = simulate(SimConfig(scheduler, replicas=2, cost=cost, window=duration), workload(seed))
    generated = [t.generated for _, t in sorted(res.tenants.items())]
    return Measured(
        "+".join(combo), res.hit_ratio, res.throughput, res.requests_per_s, jain(generated),
        sum(len(t.latency) for t in res.tenants.values()),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fairness.real_engines", description=__doc__
    )
    parser.add_argument("--duration", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".cache" / "bench-real-engines")
    parser.add_argument("--only", action="append", help="a combo such as dlpm+d2lpm")
    args = parser.parse_args(argv)
    hide_broken_extensions(print)  # the conversion imports transformers in this process
    model = ensure_smollm2(ROOT / ".fairgate")
    combos = [c for c in COMBOS if not args.only or "+".join(c) in args.only]
    print(f"# 2 vLLM-CPU replicas, {TENANTS} tenants x {CLIENTS} clients, {args.duration:.0f} s")
    print(f"{'policy':18} {'hit%':>5} {'sim':>5} {'tok/s':>6} {'sim':>6} {'req/s':>5} "
          f"{'sim':>5} {'jain':>5} {'sim':>5}")  # fmt: skip
    for combo in combos:
        real, cache = measure(args.workdir, model, combo, args.duration, args.seed)
        sim = predict(combo, cache, args.duration, args.seed)
        print(
            f"{real.combo:18} {100 * real.hit:5.1f} {100 * sim.hit:5.1f} "
            f"{real.tokens_per_s:6.1f} {sim.tokens_per_s:6.1f} {real.requests_per_s:5.2f} "
            f"{sim.requests_per_s:5.2f} {real.jain:5.3f} {sim.jain:5.3f}   "
            f"(cache {cache} tokens, {real.requests} requests)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
