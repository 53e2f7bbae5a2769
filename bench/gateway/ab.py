"""CPU per request of two or more fairgate checkouts side by side, in alternating windows over
one upstream, with the event-loop thread's own share:

    python -m bench.gateway.ab --rate 50 --window-s 5 --rounds 4 before=DIR after=DIR

(DIR: ``git archive REV | tar -x -C DIR``; ``NAME=DIR@background`` runs that tree with
``ledger.sync: background``). Process CPU time, unlike latency, stays
comparable on a machine that other work shares; the order of the trees alternates by round.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import psutil
import uvloop

from bench.gateway.load import run_load
from bench.gateway.run import LOAD_CORE, PROXY_CORE, _start_upstream
from bench.gateway.targets import Target, start_fairgate
from bench.gateway.upstream import LAST_WORD, MODEL
from bench.peers.peer_env import ROOT


def _loop_thread_s(target: Target) -> float:
    assert target.pid is not None
    for thread in psutil.Process(target.pid).threads():
        if thread.id == target.pid:
            return float(thread.user_time + thread.system_time)
    return 0.0


def window(target: Target, rate: float, window_s: float, seed: int) -> tuple[float, float, int]:
    """CPU ms per request sent, of the process and of its event-loop thread; errors."""
    cpu0, loop0 = target.cpu_seconds(), _loop_thread_s(target)
    result = uvloop.run(
        run_load(
            target.url, target.key, MODEL, LAST_WORD, rate=rate, duration_s=window_s, seed=seed
        )
    )
    sent = max(1, len(result.samples))
    cpu = (target.cpu_seconds() - cpu0) * 1e3 / sent
    loop = (_loop_thread_s(target) - loop0) * 1e3 / sent
    return cpu, loop, sum(not s.ok for s in result.samples)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.ab", description=__doc__)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--window-s", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("trees", nargs="+", metavar="NAME=DIR")
    args = parser.parse_args()
    work = ROOT / ".cache" / "bench-gateway-ab"
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {LOAD_CORE})
    upstream, url = _start_upstream(work, 0.0)
    targets: dict[str, Target] = {}
    try:
        for item in args.trees:
            name, tree = item.split("=", 1)
            tree, _, sync = tree.partition("@")
            targets[name] = start_fairgate(
                name, url, work / name, PROXY_CORE, sync=sync or "commit", tree=Path(tree)
            )
        for target in targets.values():
            window(target, 20, 1.0, 0)  # warm
        cpus: dict[str, list[float]] = {name: [] for name in targets}
        for rnd in range(args.rounds):
            order = list(targets.items())[:: 1 if rnd % 2 == 0 else -1]
            for name, target in order:
                load1 = os.getloadavg()[0]
                cpu, loop, errors = window(target, args.rate, args.window_s, rnd)
                cpus[name].append(cpu)
                print(
                    f"round {rnd} {name:24} CPU {cpu:5.2f} ms/req (event loop {loop:5.2f})"
                    f"  errors {errors}  load1 {load1:.1f}",
                    flush=True,
                )
                time.sleep(1.0)
        for name, values in cpus.items():
            ordered = sorted(values)
            print(
                f"{name}: CPU ms/req median {ordered[len(ordered) // 2]:.2f}"
                f" (min {ordered[0]:.2f}, max {ordered[-1]:.2f})"
            )
    finally:
        for target in targets.values():
            target.stop()
        upstream.stop()
        os.sched_setaffinity(0, cores)


if __name__ == "__main__":
    main()
