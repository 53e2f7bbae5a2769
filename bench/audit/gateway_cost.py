"""Latency and CPU that embedding fingerprints add to a request through a real gateway.

    python -m bench.audit.gateway_cost

The sim engine streams 512 hidden tokens at once (no generation time), so nothing can be
embedded while the reasoning streams: this is the worst case for the receipt's wait. With a
real engine most blocks are embedded while the reasoning is still being generated.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.gateway_server import GatewayServer, sim_config

MODEL = {
    "name": "m",
    "provider": "sim",
    "reasoning": "hidden",
    "sim": {"reasoning_tokens": 512, "content_tokens": 32},
}


def measure(mode: str, requests: int = 20) -> str:
    config = sim_config(Path(tempfile.mkdtemp()), audit={"embeddings": mode}, models=[MODEL])
    body = {"model": "m", "messages": [{"role": "user", "content": "think about primes"}]}
    with GatewayServer(config) as server:
        client = httpx.Client(
            base_url=server.base_url, headers={"Authorization": "Bearer sk-alice"}, timeout=60
        )
        for _ in range(3):
            client.post("/v1/chat/completions", json=body)
        times = []
        cpu = time.process_time()
        for _ in range(requests):
            start = time.perf_counter()
            response = client.post("/v1/chat/completions", json=body)
            times.append(time.perf_counter() - start)
            response.raise_for_status()
        cpu = (time.process_time() - cpu) / requests
        record = server.runtime.recorder.ledger.get(response.headers["x-request-id"])
        assert record is not None
    times.sort()
    return (
        f"| {mode} | {record['commitment'].get('protocol', 1)} | "
        f"{1000 * statistics.median(times):.0f} | {1000 * times[int(0.9 * len(times))]:.0f} | "
        f"{1000 * cpu:.0f} |"
    )


def main() -> int:
    print("| audit.embeddings | protocol | latency P50 ms | P90 ms | CPU ms/request (all) |")
    print("|---|---|---|---|---|")
    for mode in ("off", "on"):
        print(measure(mode), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
