"""Fairness, locality and throughput of every policy x router, side by side, in the simulator.

    python -m bench.scheduler_fairness [--scenario flood|shared_prefix|all] [--seed N]

For each scenario (``bench.sim.workload``) and each combination, the simulator drives the real
Scheduler over modelled engines and reports, inside the arrival window (when every tenant is
backlogged): each tenant's weighted service (thousands of tokens), Jain's index of
weight-normalised service, the smallest tenant's service as a fraction of an equal share, the
engine-reported prefix hit ratio, generated tokens per second, and median time to first token.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bench.sim import GPU_LIKE, SCENARIOS, CostModel, SimConfig, SimResult, simulate
from bench.sim.workload import Request
from fairgate.scheduler import Policy, RouterKind, SchedulerConfig


def run(
    requests: list[Request], policy: str, router: str, scope: str, replicas: int, cost: CostModel
) -> SimResult:
    config = SchedulerConfig(
        policy=policy,
        router=router,
        fairness_scope=scope,
        inflight_initial=cost.max_num_seqs,
        inflight_ceiling=max(64, cost.max_num_seqs),
    )
    return simulate(
        SimConfig(config, replicas=replicas, cost=cost, adaptive_admission=False), requests
    )


def table(name: str, requests: list[Request], replicas: int, cost: CostModel) -> None:
    tenants = sorted({r.tenant for r in requests})
    print(
        f"\n== {name}: {len(requests)} requests, {len(tenants)} tenants, {replicas} replicas "
        f"x {cost.max_num_seqs} slots, mean prompt "
        f"{statistics.mean(len(r.prompt) for r in requests):.0f} tokens =="
    )
    head = (
        f"{'policy':6} {'router':12} {'scope':8} "
        + " ".join(f"{t[:9]:>9}" for t in tenants)
        + f" {'jain':>6} {'min/fair':>8} {'hit%':>6} {'tok/s':>6} {'ttft50':>7}"
    )
    print(head)
    print("-" * len(head))
    combos = [(p.value, r.value, "replica") for p in Policy for r in RouterKind]
    combos += [(p, r.value, "cluster") for p in ("vtc", "dlpm") for r in RouterKind]
    for policy, router, scope in combos:
        res = run(requests, policy, router, scope, replicas, cost)
        shares = [res.tenants[t].service / res.tenants[t].weight for t in tenants]
        fair = sum(shares) / len(shares)
        ttft = statistics.median([x for t in res.tenants.values() for x in t.ttft] or [0.0])
        print(
            f"{policy:6} {router:12} {scope:8} "
            + " ".join(f"{res.tenants[t].service / 1e3:9.1f}" for t in tenants)
            + f" {res.jain:6.3f} {min(shares) / fair:8.2f} {100 * res.hit_ratio:6.1f}"
            + f" {res.throughput:6.0f} {ttft:7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="all", choices=["all", *SCENARIOS])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--replicas", type=int, default=4)
    args = parser.parse_args()
    cost = GPU_LIKE
    started = time.perf_counter()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        requests = SCENARIOS[name](random.Random(args.seed), duration=args.duration)
        table(name, requests, args.replicas, cost)
    print(
        f"\n(service in thousands of weighted tokens inside the {args.duration:.0f} s arrival "
        f"window; {time.perf_counter() - started:.1f} s wall)"
    )


if __name__ == "__main__":
    main()
