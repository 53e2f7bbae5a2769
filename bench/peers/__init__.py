"""peers: fairgate side by side with LiteLLM's proxy and vllm-router, in front of the same two
simulated engines, in one run (``python -m bench.peers``; see README.md here)."""

from bench.peers.engine import EngineSettings, SimEngine
from bench.peers.gateways import GatewayUnavailable, Target, all_gateways
from bench.peers.report import Row, jain, percentile, render_table, summarize
from bench.peers.workloads import FloodSpec, SteadySpec, idle_probe, run_flood, run_steady

__all__ = [
    "EngineSettings",
    "FloodSpec",
    "GatewayUnavailable",
    "Row",
    "SimEngine",
    "SteadySpec",
    "Target",
    "all_gateways",
    "idle_probe",
    "jain",
    "percentile",
    "render_table",
    "run_flood",
    "run_steady",
    "summarize",
]
