"""sim: a discrete-event simulator that drives the real ``scheduler.Scheduler`` with modelled
engines (``engine``) and synthetic multi-tenant workloads (``workload``)."""

from bench.sim.engine import CostModel, Engine
from bench.sim.simulator import SimConfig, SimResult, Simulation, TenantResult, simulate
from bench.sim.workload import SCENARIOS, Request, TenantLoad, flood, generate, shared_prefix

__all__ = [
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
    "shared_prefix",
    "simulate",
]
