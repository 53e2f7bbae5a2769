"""fairgate, LiteLLM and vllm-router side by side in front of the same two simulated engines.

    python -m bench.peers [--only NAME ...] [--quick] [--save] [--no-install]

Starts two upstream ``sim`` engines (``bench.peers.upstream``), then for each gateway
(``bench.peers.gateways``): start it, measure its added latency on an idle system, run the
flood and the steady shared-prefix workloads (``bench.peers.workloads``) with the engines'
caches reset before each, read the engines' own totals, stop it. Prints one table per workload
(columns in ``bench.peers.report``) and, with ``--save``, writes the JSON to
``bench/peers/results/``. A gateway that cannot be installed or started is reported with the
reason and skipped; every process started here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from bench.peers.engine import EngineSettings
from bench.peers.gateways import (
    Direct,
    Fairgate,
    Gateway,
    GatewayUnavailable,
    StartContext,
    Target,
    all_gateways,
    fairgate_version,
)
from bench.peers.peer_env import DEFAULT_VENV, ensure_peer_env
from bench.peers.processes import Process, StartFailed, free_port
from bench.peers.report import Row, percentile, render_table, summarize
from bench.peers.workloads import (
    FLOOD_TENANTS,
    STEADY_TENANTS,
    FloodSpec,
    SteadySpec,
    idle_probe,
    run_flood,
    run_steady,
)

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
UPSTREAMS = 2


class Upstreams:
    """The two engine processes every gateway shares."""

    def __init__(self, settings: EngineSettings, workdir: Path) -> None:
        self.settings = settings
        self.urls: list[str] = []
        self._processes: list[Process] = []
        self._workdir = workdir

    def start(self) -> Upstreams:
        for n in range(UPSTREAMS):
            port = free_port()
            argv = [sys.executable, "-m", "bench.peers.upstream", "--port", str(port)]
            argv += ["--slots", str(self.settings.slots)]
            argv += ["--step-ms", str(self.settings.step_s * 1e3)]
            argv += ["--prefill-us-per-token", str(self.settings.prefill_s_per_token * 1e6)]
            argv += ["--prefill-chunk", str(self.settings.prefill_chunk)]
            argv += ["--cache-tokens", str(self.settings.cache_tokens)]
            root = str(Path(__file__).resolve().parents[2])
            env = {**os.environ, "PYTHONPATH": root}
            log = self._workdir / f"upstream-{n}.txt"
            process = Process(f"sim upstream {n}", argv, log, env=env, cwd=Path(root)).start()
            self._processes.append(process)
            url = f"http://127.0.0.1:{port}"
            process.wait_ready(url + "/health", 30.0)
            self.urls.append(url)
        return self

    def stop(self) -> None:
        for process in self._processes:
            process.stop()
        self._processes.clear()

    def alive(self) -> bool:
        return all(p.alive for p in self._processes)

    def stats(self) -> list[dict[str, int]]:
        return [httpx.get(u + "/sim/stats", timeout=5.0).json() for u in self.urls]

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(s["running"] == 0 and s["waiting"] == 0 for s in self.stats()):
                return True
            time.sleep(0.1)
        return False

    def reset(self) -> None:
        if not self.wait_idle():
            raise RuntimeError("the upstream engines did not go idle within 60 s")
        for url in self.urls:
            httpx.post(url + "/sim/reset", timeout=5.0).raise_for_status()

    def totals(self) -> list[dict[str, int]]:
        """Each engine's own totals since the last reset, once the engines are idle."""
        if not self.wait_idle():
            print("   (the upstream engines were still busy 60 s after the run; totals so far)")
        return [
            {k: int(v) for k, v in stats.items() if k not in ("running", "waiting")}
            for stats in self.stats()
        ]


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: children are stopped


def _machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


def _selected(only: list[str] | None) -> list[Gateway]:
    gateways = all_gateways()
    if not only:
        return gateways
    chosen = [g for g in gateways if any(g.name.startswith(o) for o in only)]
    if not chosen or chosen[0].name != "direct":
        chosen.insert(0, Direct())  # the reference every overhead is measured against
    return chosen


def _measure(
    target: Target,
    upstreams: Upstreams,
    flood: FloodSpec,
    steady: SteadySpec,
    direct_ttft: float | None,
    seed: int,
) -> tuple[float, dict[str, Row]]:
    upstreams.reset()
    ttfts = asyncio.run(idle_probe(target))
    p50 = percentile(ttfts, 50)
    if p50 is None:
        raise RuntimeError("the idle probe streamed no token")
    overhead = 0.0 if direct_ttft is None else 1e3 * (p50 - direct_ttft)
    rows: dict[str, Row] = {}
    upstreams.reset()
    outcome = asyncio.run(run_flood(target, flood, seed))
    rows["flood"] = summarize(
        target.name,
        target.version,
        target.tenant_aware,
        outcome,
        FLOOD_TENANTS[1:],
        upstreams.totals(),
        overhead,
    )
    upstreams.reset()
    outcome = asyncio.run(run_steady(target, steady, seed))
    rows["steady"] = summarize(
        target.name,
        target.version,
        target.tenant_aware,
        outcome,
        STEADY_TENANTS,
        upstreams.totals(),
        overhead,
    )
    return p50, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="gateways whose name starts with NAME"
    )
    parser.add_argument(
        "--quick", action="store_true", help="6 s and 5 s windows instead of 10 s each"
    )
    parser.add_argument("--save", action="store_true", help="write JSON to bench/peers/results/")
    parser.add_argument("--no-install", action="store_true", help="never pip install peers")
    parser.add_argument("--peers-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument(
        "--fairgate",
        action="append",
        metavar="POLICY/ROUTER",
        default=[],
        help="also measure fairgate with this scheduler (e.g. dlpm/round_robin)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if any(spec.count("/") != 1 for spec in args.fairgate):
        parser.error("--fairgate takes POLICY/ROUTER, e.g. dlpm/round_robin")
    extra: list[Gateway] = [Fairgate(*spec.split("/")) for spec in args.fairgate]
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    flood, steady = FloodSpec(), SteadySpec()
    if args.quick:
        flood, steady = FloodSpec(window_s=6.0), SteadySpec(window_s=5.0)
    engine = EngineSettings()
    when = datetime.datetime.now().astimezone()

    print(f"bench.peers — {when:%Y-%m-%d %H:%M %Z} — {_machine()} — {_load()}")
    print(
        f"upstream: {UPSTREAMS} x sim engine (simulated, not vLLM): {engine.slots} batch slots, "
        f"FIFO queue, {engine.step_s * 1e3:.0f} ms/decode step, "
        f"{engine.prefill_s_per_token * 1e6:.0f} us/uncached prompt token, "
        f"prefix cache {engine.cache_tokens} tokens each"
    )
    peers = ensure_peer_env(args.peers_venv, install=not args.no_install)
    print(
        f"versions: fairgate {fairgate_version()}, "
        + ", ".join(
            [f"{name} {version}" for name, version in sorted(peers.versions.items())]
            + [f"{name} unavailable" for name in sorted(peers.problems)]
        )
    )
    rows: dict[str, list[Row]] = {"flood": [], "steady": []}
    skipped: dict[str, str] = {}
    direct_ttft: float | None = None
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fairgate-peers-")))
        upstreams = Upstreams(engine, workdir)
        stack.callback(upstreams.stop)
        try:
            upstreams.start()
        except StartFailed as failed:
            print(f"cannot start the upstream engines: {failed}")
            return 1
        context = StartContext(
            upstreams.urls, [*FLOOD_TENANTS, *STEADY_TENANTS], workdir, peers, engine.cache_tokens
        )
        selected = _selected(args.only)
        if selected[-1].name == "direct (control)":
            selected[-1:-1] = extra  # the control stays last
        else:
            selected += extra
        for gateway in selected:
            began = time.perf_counter()
            print(f"\n-- {gateway.name}: starting", flush=True)
            try:
                target = gateway.start(context)
            except GatewayUnavailable as why:
                skipped[gateway.name] = str(why)
                print(f"-- {gateway.name}: NOT MEASURED, it could not start:\n{why}")
                continue
            try:
                ttft, measured = _measure(target, upstreams, flood, steady, direct_ttft, args.seed)
            except Exception as error:  # one broken gateway must not stop the others
                skipped[gateway.name] = f"failed during the run: {type(error).__name__}: {error}"
                print(f"-- {gateway.name}: NOT MEASURED, {skipped[gateway.name]}")
                if not upstreams.alive():
                    print("the upstream engines died; stopping")
                    break
                continue
            finally:
                gateway.stop()
            if isinstance(gateway, Direct) and direct_ttft is None:
                direct_ttft = ttft
            for workload, row in measured.items():
                rows[workload].append(row)
            print(
                f"-- {gateway.name}: done in {time.perf_counter() - began:.0f} s "
                f"(idle p50 TTFT {1e3 * ttft:.1f} ms)",
                flush=True,
            )

    print()
    print(
        render_table(
            f"== flood: heavy keeps {flood.heavy_in_flight} requests in flight, light1 and "
            f"light2 {flood.light_in_flight} each; tokens inside the "
            f"{flood.window_s:.0f} s window ==",
            FLOOD_TENANTS,
            rows["flood"],
            "light tenants only",
        )
    )
    print()
    print(
        render_table(
            f"== steady: Poisson {steady.rate_per_s:g} req/s from 3 equal tenants over "
            f"{steady.documents} shared {steady.document_words}-word documents, "
            f"{steady.window_s:.0f} s window ==",
            STEADY_TENANTS,
            rows["steady"],
            "all tenants",
        )
    )
    for workload, workload_rows in rows.items():
        for result in workload_rows:
            if result.errors:
                print(f"\n{workload}: {result.gateway}: {result.errors} failed requests, e.g.")
                for example in result.error_examples:
                    print(f"    {example}")
    for name, reason in skipped.items():
        print(f"\nnot measured: {name}: {reason.splitlines()[0]}")
    elapsed = time.perf_counter() - started
    print(f"\n(total {elapsed:.0f} s wall; {_load()} at the end)")
    if args.save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"peers-{when:%Y%m%d-%H%M%S}.json"
        payload: dict[str, Any] = {
            "date": when.isoformat(timespec="seconds"),
            "machine": _machine(),
            "load_at_end": _load(),
            "versions": {"fairgate": fairgate_version(), **peers.versions},
            "engine": asdict(engine),
            "flood": asdict(flood),
            "steady": asdict(steady),
            "rows": {w: [r.to_json() for r in rs] for w, rs in rows.items()},
            "not_measured": skipped,
            "wall_s": elapsed,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"saved {path}")
    return 0
