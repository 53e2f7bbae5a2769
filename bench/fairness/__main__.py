"""Fairness, locality and throughput of the policies side by side on the paper's workloads.

    python -m bench.fairness [--workload flood|long_doc_qa|tree_of_thought|multi_turn|
                              misbehaving_S1|misbehaving_S2|misbehaving_S2_overload|all]
                             [--replicas N] [--seed S] [--duration S] [--plots DIR] [--quick]

Each row drives the real ``Scheduler`` (its defaults, apart from policy and router) over
simulated engines (``replicas.engine_model``, the ``sim`` provider's engine) with adaptive
admission as the gateway runs it. Columns: Jain's index on weight-normalised service and on
generated tokens, the smallest tenant's service / an equal share, generated tokens/s,
requests/s, the engines' prefix hit rate, the largest service gap between two backlogged
tenants in a 5 s window, p50/p99 latency of the light tenants (all tenants but the first),
and the load guard's firings. ``--plots`` writes per-tenant service over time as PNG.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

from bench.sim import SimConfig, SimResult, simulate
from bench.sim.engine import CostModel
from bench.sim.metrics import percentile
from bench.sim.paper_workloads import (
    Workload,
    flood,
    long_doc_qa,
    misbehaving,
    multi_turn,
    tree_of_thought,
)
from fairgate.scheduler import SchedulerConfig

COMBOS = [
    ("fcfs", "round_robin"),
    ("vtc", "least_load"),  # OSDI'24 VTC
    ("lpm", "lpm"),
    ("lpm", "preble"),
    ("dlpm", "round_robin"),
    ("dlpm", "d2lpm"),
]

# Engines per workload: the flood's is bench.peers' upstream (4 slots, a cache for two of the
# three system prompts); the paper's are GPU-like, with caches under 40% of the working set.
FLOOD_ENGINE = CostModel(
    max_num_seqs=4,
    step_s=0.025,
    step_s_per_seq=0.0,
    prefill_s_per_token=0.0003,
    prefill_chunk=512,
    cache_tokens=2400,
)
PAPER_ENGINE = CostModel(
    max_num_seqs=16,
    step_s=0.025,
    step_s_per_seq=0.0005,
    prefill_s_per_token=0.0002,
    prefill_chunk=2048,
    cache_tokens=30_000,
)

WORKLOADS: dict[str, tuple[Callable[[random.Random, float], Workload], CostModel, int]] = {
    "flood": (lambda rng, d: flood(rng, duration=d), FLOOD_ENGINE, 2),
    "long_doc_qa": (lambda rng, d: long_doc_qa(rng, duration=d), PAPER_ENGINE, 1),
    "tree_of_thought": (lambda rng, d: tree_of_thought(rng, duration=d), PAPER_ENGINE, 4),
    "multi_turn": (lambda rng, d: multi_turn(rng, duration=d), PAPER_ENGINE, 4),
    "misbehaving_S1": (lambda rng, d: misbehaving(rng, "S1", duration=d), PAPER_ENGINE, 4),
    "misbehaving_S2": (lambda rng, d: misbehaving(rng, "S2", duration=d), PAPER_ENGINE, 4),
    # S2 at 4x the rate: every tenant backlogged, as the paper's min/fair comparison assumes
    "misbehaving_S2_overload": (
        lambda rng, d: misbehaving(rng, "S2", rate=4.0, duration=d),
        PAPER_ENGINE,
        4,
    ),
}


def run(workload: Workload, policy: str, router: str, cost: CostModel, replicas: int) -> SimResult:
    config = SchedulerConfig(
        policy=policy, router=router, cache_tokens_per_replica=cost.cache_tokens
    )
    return simulate(
        SimConfig(config, replicas=replicas, cost=cost, window=workload.window),
        workload.requests,
    )


def row(policy: str, router: str, res: SimResult) -> str:
    light = [t for n, t in sorted(res.tenants.items())][1:]
    lat = [x for t in light for x in t.latency]
    guard = res.stats.route_reasons.get("guard", 0)
    return (
        f"{policy:5} {router:12} {res.jain:5.3f} {res.jain_generated:5.3f} "
        f"{res.min_share():5.2f} {res.throughput:7.0f} {res.requests_per_s:6.2f} "
        f"{100 * res.hit_ratio:5.1f} {res.max_service_gap() / 1e3:7.1f} "
        f"{percentile(lat, 0.5):6.2f} {percentile(lat, 0.99):6.2f} {guard:5d}"
    )


HEAD = (
    f"{'policy':5} {'router':12} {'jain':>5} {'jgen':>5} {'min/f':>5} {'tok/s':>7} "
    f"{'req/s':>6} {'hit%':>5} {'gap k':>7} {'p50 s':>6} {'p99 s':>6} {'guard':>5}"
)


def plot(path: Path, title: str, results: dict[str, SimResult]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.2), sharey=True)
    for ax, (name, res) in zip(axes, results.items(), strict=True):
        for tenant in sorted(res.tenants):
            xs, ys = zip(*res.series(tenant), strict=True)
            ax.plot(xs, [y / 1e3 for y in ys], label=tenant)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("s")
    axes[0].set_ylabel("service (k weighted tokens)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness")
    parser.add_argument("--workload", default="all", choices=["all", *WORKLOADS])
    parser.add_argument("--replicas", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--plots", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="10 s windows (CI smoke)")
    args = parser.parse_args(argv)
    duration = 10.0 if args.quick else args.duration
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    started = time.perf_counter()
    print(f"# {platform.platform()}, Python {platform.python_version()}, seed {args.seed}")
    for name in names:
        make, cost, default_replicas = WORKLOADS[name]
        replicas = args.replicas or default_replicas
        workload = make(random.Random(args.seed), duration)
        tenants = sorted({r.tenant for r in workload.requests})
        print(
            f"\n== {name}: {len(tenants)} tenants, {replicas} replicas x {cost.max_num_seqs} "
            f"slots, cache {cost.cache_tokens} tokens, {duration:.0f} s window, seed {args.seed} =="
        )
        print(HEAD)
        print("-" * len(HEAD))
        results = {}
        for policy, router in COMBOS:
            res = run(workload, policy, router, cost, replicas)
            results[f"{policy}+{router}"] = res
            print(row(policy, router, res))
        base = results["vtc+least_load"].throughput
        best = results["dlpm+d2lpm"].throughput
        print(f"dlpm+d2lpm / vtc throughput: {best / base:.2f}x" if base else "")
        if args.plots is not None:
            args.plots.mkdir(parents=True, exist_ok=True)
            shown = {k: results[k] for k in ("fcfs+round_robin", "vtc+least_load", "dlpm+d2lpm")}
            plot(args.plots / f"{name}-r{replicas}-s{args.seed}.png", name, shown)
    print(f"\n({time.perf_counter() - started:.1f} s wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
