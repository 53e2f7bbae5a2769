"""Regenerate ``tests/replicas/data/vllm-<version>-metrics.txt``: what a vLLM server's
``/metrics`` shows, produced by vLLM's own ``PrometheusStatLogger`` without starting a server.

    python -m tests.support.capture_vllm_metrics   # needs the ``cpu`` or ``gpu`` extra

One scheduler step is recorded: 3 running and 2 waiting requests, a KV cache 25 % full and
3832 prefix-cache query tokens of which 2688 hit (4 prompts of 958 tokens, 3 of them cached
up to 896 tokens, as measured in VLLM_NOTES.md).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(__file__).parents[1] / "replicas" / "data"


def main() -> None:
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import vllm
    from prometheus_client import REGISTRY, generate_latest
    from vllm.engine.arg_utils import EngineArgs
    from vllm.v1.metrics.loggers import PrometheusStatLogger
    from vllm.v1.metrics.stats import PrefixCacheStats, SchedulerStats

    from tests.support.tiny_reasoner import build_tiny_reasoner

    args = EngineArgs(
        model=str(build_tiny_reasoner()),
        served_model_name=["tiny"],
        max_model_len=2048,
        enforce_eager=True,
    )
    logger = PrometheusStatLogger(args.create_engine_config(), engine_indexes=[0])
    stats = SchedulerStats(num_running_reqs=3, num_waiting_reqs=2, kv_cache_usage=0.25)
    stats.prefix_cache_stats = PrefixCacheStats(requests=4, queries=958 * 4, hits=896 * 3)
    logger.record(scheduler_stats=stats, iteration_stats=None, engine_idx=0)
    out = DATA / f"vllm-{vllm.__version__}-metrics.txt"
    out.write_bytes(generate_latest(REGISTRY))
    print(out)


if __name__ == "__main__":
    main()
