"""One soak run: closed-loop clients of every tenant (streaming and not, a few that hang up
early) against the gateway for ``duration_s``, sampling its RSS, open file descriptors and
queues every ``sample_s``; then the ledger is exported and verified.

What it reports, and what "flat" means here:

* RSS and file descriptors: the first sample after the warm-up (a quarter of the run) and the
  last; the growth between them, and its least-squares slope per minute over that span.
* queues: the largest ``fairgate_tenant_queued_jobs`` seen, against ``max_queued_per_tenant``.
* requests by HTTP status, 5xx among them, and ledger records against requests sent.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.soak.gateway import Gateway, Shape, queued_jobs, write_config


@dataclass
class Sample:
    at: float
    rss: int
    fds: int
    max_queued: float
    pooled: int = 0  # of the fds: kept-alive connections to the upstreams (a bounded pool)


@dataclass
class SoakResult:
    shape: Shape
    duration_s: float
    statuses: Counter[int] = field(default_factory=Counter)
    hangups: int = 0
    latencies: list[float] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    records: int = 0
    verify: str = ""
    idle_before: Sample | None = None  # before the load, once the gateway is ready
    idle_after: Sample | None = None  # a second after the load

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.hangups

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def steady(self) -> list[Sample]:
        """The samples after the warm-up (the first quarter of the run)."""
        start = self.samples[0].at + self.duration_s / 4
        return [s for s in self.samples if s.at >= start] or self.samples[-1:]

    def growth(self, attr: str) -> float:
        steady = self.steady()
        return float(getattr(steady[-1], attr) - getattr(steady[0], attr))

    def slope_per_min(self, attr: str) -> float:
        steady = self.steady()
        if len(steady) < 3:
            return 0.0
        xs = [s.at for s in steady]
        ys = [float(getattr(s, attr)) for s in steady]
        return statistics.linear_regression(xs, ys).slope * 60

    def max_queued(self) -> float:
        return max((s.max_queued for s in self.samples), default=0.0)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _client(url: str, tenant: str, seed: int, stop: float, result: SoakResult) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer sk-{tenant}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        index = 0
        while time.monotonic() < stop:
            index += 1
            body: dict[str, Any] = {
                "model": "sim",
                "messages": [{"role": "user", "content": f"{tenant} asks {index % 7}"}],
                "stream": rng.random() < 0.5,
            }
            began = time.monotonic()
            status = await _one(http, body, hang_up=rng.random() < 0.05)
            if status is None:
                result.hangups += 1
                continue
            result.statuses[status] += 1
            if status == 200:
                result.latencies.append(time.monotonic() - began)
            elif status == 429:
                await asyncio.sleep(0.5)


async def _one(http: httpx.AsyncClient, body: dict[str, Any], *, hang_up: bool) -> int | None:
    """The request's HTTP status, or None when this client hung up early on purpose."""
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if hang_up and response.status_code == 200:
            return None  # leaves with the body unread
        await response.aread()
        return response.status_code


def _sample(gateway: Gateway, upstreams: tuple[str, ...] = ()) -> Sample:
    queued = max(queued_jobs(gateway.url).values(), default=0.0)
    pooled = gateway.connections_to(upstreams) if upstreams else 0
    return Sample(time.monotonic(), gateway.rss_bytes(), gateway.open_fds(), queued, pooled)


async def _sampler(gateway: Gateway, stop: float, result: SoakResult, every: float) -> None:
    while time.monotonic() < stop:
        result.samples.append(await asyncio.to_thread(_sample, gateway))
        await asyncio.sleep(every)


async def _load(gateway: Gateway, result: SoakResult, sample_s: float) -> None:
    stop = time.monotonic() + result.duration_s
    shape = result.shape
    tasks = [
        _client(gateway.url, tenant, index * 1000 + n, stop, result)
        for index, tenant in enumerate(shape.tenant_names())
        for n in range(shape.clients(index))
    ]
    await asyncio.gather(_sampler(gateway, stop, result, sample_s), *tasks)


def run_soak(workdir: Path, shape: Shape, duration_s: float, sample_s: float = 1.0) -> SoakResult:
    workdir.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(write_config(workdir, shape))
    result = SoakResult(shape, duration_s)
    try:
        gateway.wait_ready()
        result.idle_before = _sample(gateway)
        asyncio.run(_load(gateway, result, sample_s))
        time.sleep(1.0)  # the last hung-up requests finish their records
        result.idle_after = _sample(gateway, shape.upstreams)
    finally:
        gateway.stop()
    result.records, result.verify = gateway.verified_records(workdir)
    return result


def report(result: SoakResult) -> list[str]:
    mib = 1024 * 1024
    steady = result.steady()
    shape = result.shape
    return [
        f"tenants {shape.tenants} ({shape.heavy_tenants} heavy), clients "
        f"{sum(shape.clients(i) for i in range(shape.tenants))}, {result.duration_s:.0f} s, "
        + (
            f"{len(shape.upstreams)} OpenAI-compatible upstreams"
            if shape.upstreams
            else f"{shape.replicas} sim replicas x {shape.max_num_seqs} seqs"
        ),
        f"requests {result.requests} ({result.requests / result.duration_s:.1f}/s): "
        + ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items()))
        + f", hung up early: {result.hangups}; 5xx: {result.server_errors}",
        f"latency of 200s p50 {result.percentile(0.5):.3f} s, p99 {result.percentile(0.99):.3f} s",
        f"RSS {steady[0].rss / mib:.1f} -> {steady[-1].rss / mib:.1f} MiB after warm-up "
        f"(growth {result.growth('rss') / mib:+.1f} MiB, slope "
        f"{result.slope_per_min('rss') / mib:+.2f} MiB/min)",
        f"open fds idle {_fds(result.idle_before)} before, {_fds(result.idle_after)} after"
        f" ({result.idle_after.pooled if result.idle_after else 0} pooled upstream); "
        f"under load {steady[0].fds} -> {steady[-1].fds} (max {max(s.fds for s in steady)}, "
        f"slope {result.slope_per_min('fds'):+.2f}/min)",
        f"largest tenant queue {result.max_queued():.0f} (bound {shape.max_queued_per_tenant})",
        f"ledger records {result.records} for {result.requests} requests; {result.verify}",
    ]


def _fds(sample: Sample | None) -> str:
    return "-" if sample is None else str(sample.fds)
