"""sim: a discrete-event simulator that drives the real ``scheduler.Scheduler`` with modelled
engines (``engine``, the ``sim`` provider's engine model) and seeded multi-tenant workloads
(``workload``)."""

from bench.sim.engine import GPU_LIKE, CostModel, Engine
from bench.sim.metrics import SimResult, TenantResult, jain, percentile
from bench.sim.simulator import SimConfig, Simulation, simulate
from bench.sim.workload import SCENARIOS, Request, TenantLoad, flood, generate, shared_prefix

__all__ = [
    "GPU_LIKE",
    "SCENARIOS",
    "CostModel",
    "Engine",
    "Request",
    "SimConfig",
    "SimResult",
    "Simulation",
    "TenantLoad",
    "TenantResult",
    "flood",
    "generate",
    "jain",
    "percentile",
    "shared_prefix",
    "simulate",
]
