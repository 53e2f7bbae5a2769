"""The issue's flooding scenario at the core: one tenant queues 10x the jobs of two others.

With DLPM the light tenants keep an equal share within the 2(U + Q_u) bound; with FCFS they
get nothing until the flood has drained. (The gateway's end-to-end test runs the same
scenario through HTTP with the sim provider; ``python -m bench.scheduler_fairness`` runs it on
four simulated replicas.)
"""

from __future__ import annotations

import random

from fairgate.scheduler import SchedulerConfig

TENANTS = {"flood": 1.0, "light-a": 1.0, "light-b": 1.0}


def _work(spec):
    rng = random.Random(5)
    jobs = []
    for tenant, count in (("flood", 300), ("light-a", 30), ("light-b", 30)):
        jobs += [
            spec(
                tenant,
                tuple(rng.randrange(100) for _ in range(rng.randint(5, 40))),
                rng.randint(1, 30),
            )
            for _ in range(count)
        ]
    return jobs  # the flood's burst arrives first


def test_dlpm_keeps_light_tenants_at_an_equal_share(backlog, spec):
    config = SchedulerConfig(
        policy="dlpm",
        router="round_robin",
        quantum=64.0,
        inflight_initial=1,
        inflight_ceiling=max(64, 1),
        max_queued_per_tenant=1000,
    )
    work = _work(spec)
    trace = backlog(config, TENANTS, work, random.Random(1), report="random")
    u = max(len(s.prompt) + 2 * s.output for s in work)
    share = sum(trace.served.values()) / 3
    for light in ("light-a", "light-b"):
        assert trace.served[light] >= share - 2 * (u + config.quantum)
    assert trace.order[:30].count("flood") <= 15  # the burst arrived first, yet shares


def test_fcfs_starves_them(backlog, spec):
    config = SchedulerConfig(
        policy="fcfs",
        router="round_robin",
        inflight_initial=1,
        inflight_ceiling=max(64, 1),
        max_queued_per_tenant=1000,
    )
    trace = backlog(config, TENANTS, _work(spec), random.Random(1), report="random")
    share = sum(trace.served.values()) / 3
    assert trace.served["light-a"] == trace.served["light-b"] == 0
    assert trace.served["flood"] > 2.9 * share
