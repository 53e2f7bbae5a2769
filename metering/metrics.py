"""Prometheus metrics of the gateway, on a registry passed in (never the global one).

Names are under ``fairgate_``, in base units; labels are bounded: ``tenant`` takes only
configured tenant names, ``model`` only configured models, ``status`` a fixed set.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from metering.usage import Usage

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_ITL = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        tm = ["tenant", "model"]
        self.requests = Counter(
            "fairgate_requests",
            "Requests finished, by outcome.",
            [*tm, "status"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "fairgate_auth_failures",
            "Requests refused for a missing or unknown API key.",
            registry=registry,
        )
        self.tokens = Counter(
            "fairgate_tokens", "Tokens metered, by kind.", [*tm, "kind"], registry=registry
        )
        self.cost = Counter(
            "fairgate_cost", "Cost billed, in the configured currency.", tm, registry=registry
        )
        self.duration = Histogram(
            "fairgate_request_duration_seconds",
            "Time from arrival to the last byte.",
            tm,
            buckets=_LATENCY,
            registry=registry,
        )
        self.ttft = Histogram(
            "fairgate_time_to_first_token_seconds",
            "Time from arrival to the first generated token.",
            tm,
            buckets=_LATENCY,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "fairgate_queue_wait_seconds",
            "Time a request waited for the scheduler to admit it.",
            tm,
            buckets=_LATENCY,
            registry=registry,
        )
        self.itl = Histogram(
            "fairgate_inter_token_latency_seconds",
            "Time between consecutive generated tokens.",
            tm,
            buckets=_ITL,
            registry=registry,
        )
        self.disagreements = Counter(
            "fairgate_usage_disagreements",
            "Requests whose gateway-side token counts differ from the engine's usage.",
            ["model", "field"],
            registry=registry,
        )
        self.ledger_records = Counter(
            "fairgate_ledger_records", "Ledger records appended.", ["status"], registry=registry
        )
        self.ledger_append = Histogram(
            "fairgate_ledger_append_seconds",
            "Time to sign, chain and durably commit one record.",
            buckets=_ITL,
            registry=registry,
        )
        self.replica_healthy = Gauge(
            "fairgate_replica_healthy",
            "1 when the replica passes its health check.",
            ["model", "replica"],
            registry=registry,
        )
        self.replica_restarts = Counter(
            "fairgate_replica_restarts",
            "Replicas restarted after failing.",
            ["model", "replica"],
            registry=registry,
        )
        self.retries = Counter(
            "fairgate_retries",
            "Requests retried on another replica before any output.",
            ["model"],
            registry=registry,
        )

    def observe_usage(self, tenant: str, model: str, usage: Usage) -> None:
        kinds = {
            "prompt": usage.prompt_tokens,
            "cached_prompt": usage.cached_tokens,
            "completion": usage.completion_tokens,
            "reasoning": usage.reasoning_tokens,
        }
        for kind, value in kinds.items():
            self.tokens.labels(tenant, model, kind).inc(value)
