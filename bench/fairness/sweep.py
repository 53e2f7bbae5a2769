"""Per-client latency across a load sweep: D²LPM against the Preble-like router (and the
baselines), the comparison of the DLPM paper's Fig. 9 (arXiv 2501.14312: up to 7.18x lower
per-client latency than Preble).

    python -m bench.fairness.sweep [--replicas 4 8] [--loads 0.5 0.6 0.7 0.8 0.9]
                                   [--duration S] [--seed S] [--quick]

The workload (``shared_docs``): open-loop Poisson clients, one tenant each, 10 per 4
replicas; each has two documents of 3-6k tokens and asks questions about them; client ``t0``
sends ``k`` = 4 times the others' rate (a misbehaving client, S1). Capacity is measured, not
assumed: the requests/s the best of the compared schedulers completes when every client
sends 3x too much; load x is then x of that, the same arrivals for every scheduler. Each row
gives per-client p99 latency (the median client's and the worst client's), the light
clients' p50, requests/s, hit rate and Jain's index on generated tokens.
"""

from __future__ import annotations

import argparse
import random
import time

from bench.fairness.__main__ import PAPER_ENGINE
from bench.sim import SimConfig, SimResult, simulate
from bench.sim.engine import CostModel
from bench.sim.metrics import percentile
from bench.sim.workload import Request, TenantLoad, documents, generate
from fairgate.scheduler import SchedulerConfig

COMBOS = [("fcfs", "round_robin"), ("lpm", "preble"), ("dlpm", "d2lpm")]
HEAVY_FACTOR = 4.0


def shared_docs(
    rng: random.Random, clients: int, rate: float, duration: float, heavy: float = HEAVY_FACTOR
) -> list[Request]:
    """``rate``: requests/s over all clients; client t0 sends ``heavy`` times a share."""
    unit = rate / (clients - 1 + heavy)
    loads = [
        TenantLoad(
            f"t{i}",
            unit * (heavy if i == 0 else 1.0),
            documents(rng, 2, (3_000, 6_000)),
            question=(20, 80),
            output=(30, 120),
        )
        for i in range(clients)
    ]
    return generate(rng, loads, duration)


def run(
    requests: list[Request], policy: str, router: str, replicas: int, window: float
) -> SimResult:
    cost: CostModel = PAPER_ENGINE
    config = SchedulerConfig(
        policy=policy, router=router, cache_tokens_per_replica=cost.cache_tokens
    )
    return simulate(SimConfig(config, replicas=replicas, cost=cost, window=window), requests)


def capacity(seed: int, clients: int, replicas: int, duration: float, heavy: float) -> float:
    """Completed requests/s in the window under 3x overload, best of the compared schedulers
    (the offered rate is first set from a rough guess, then the measurement)."""
    guess = 1.5 * replicas
    requests = shared_docs(random.Random(seed), clients, 3 * guess, duration, heavy)
    done = [run(requests, p, r, replicas, duration).requests_per_s for p, r in COMBOS]
    return max(done)


def per_client_p99(res: SimResult) -> list[float]:
    return sorted(t.latency_p(0.99) for t in res.tenants.values() if t.latency)


def row(load: float, policy: str, router: str, res: SimResult) -> str:
    p99 = per_client_p99(res)
    light = [x for name, t in res.tenants.items() if name != "t0" for x in t.latency]
    return (
        f"{load:4.0%} {policy:5} {router:12} {percentile(p99, 0.5):8.2f} {p99[-1]:8.2f} "
        f"{percentile(light, 0.5):7.2f} {res.requests_per_s:6.2f} {100 * res.hit_ratio:5.1f} "
        f"{res.jain_generated:5.3f}"
    )


HEAD = (
    f"{'load':>4} {'policy':5} {'router':12} {'p99 med':>8} {'p99 max':>8} {'p50 lt':>7} "
    f"{'req/s':>6} {'hit%':>5} {'jgen':>5}"
)


def sweep(
    replicas: int, loads: list[float], duration: float, seed: int, heavy: float = HEAVY_FACTOR
) -> None:
    clients = 10 * replicas // 4
    cap = capacity(seed, clients, replicas, duration, heavy)
    print(
        f"\n== shared_docs: {clients} clients (t0 x{heavy:g}), {replicas} replicas x "
        f"{PAPER_ENGINE.max_num_seqs} slots, cache {PAPER_ENGINE.cache_tokens} tokens, "
        f"{duration:.0f} s window, seed {seed}; capacity {cap:.2f} req/s =="
    )
    print(HEAD)
    print("-" * len(HEAD))
    for load in loads:
        requests = shared_docs(random.Random(seed), clients, load * cap, duration, heavy)
        results = {(p, r): run(requests, p, r, replicas, duration) for p, r in COMBOS}
        for (p, r), res in results.items():
            print(row(load, p, r, res))
        ours, preble = results["dlpm", "d2lpm"], results["lpm", "preble"]
        median = percentile(per_client_p99(preble), 0.5) / percentile(per_client_p99(ours), 0.5)
        worst = per_client_p99(preble)[-1] / per_client_p99(ours)[-1]
        client, most = largest_client_ratio(preble, ours)
        print(
            f"     Preble-like / D²LPM p99: median client {median:.2f}x, worst client "
            f"{worst:.2f}x, largest for one client {most:.2f}x ({client})"
        )


def largest_client_ratio(theirs: SimResult, ours: SimResult) -> tuple[str, float]:
    """The client whose p99 latency D²LPM lowers the most, and by how much (the paper's
    "up to" is per client)."""
    ratios = {
        name: theirs.tenants[name].latency_p(0.99) / t.latency_p(0.99)
        for name, t in ours.tenants.items()
        if t.latency and name in theirs.tenants and theirs.tenants[name].latency
    }
    client = max(ratios, key=ratios.__getitem__)
    return client, ratios[client]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness.sweep")
    parser.add_argument("--replicas", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--loads", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--heavy-factor",
        type=float,
        default=HEAVY_FACTOR,
        help=f"client t0's rate over each other client's (default {HEAVY_FACTOR:g})",
    )
    parser.add_argument("--quick", action="store_true", help="4 replicas, 70%% load, 10 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.replicas, args.loads, args.duration = [4], [0.7], 10.0
    started = time.perf_counter()
    for replicas in args.replicas:
        sweep(replicas, args.loads, args.duration, args.seed, args.heavy_factor)
    print(f"\n({time.perf_counter() - started:.1f} s wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
