"""Prometheus metrics of the gateway, on a registry passed in (never the global one).

Names are under ``fairgate_``, in base units (seconds, tokens), ``_total`` only on counters
(prometheus_client appends it to a Counter's name itself). Labels are bounded: once
``restrict`` is called, ``tenant`` takes only configured tenant names and ``model`` only
configured models; anything else is counted under ``other``. ``status`` and ``kind`` take
fixed sets of values; API keys never appear in any label.

The scheduler's state, the fairness index and the engines' own gauges are read at scrape
time by the gateway's collector (``gateway.telemetry``), not kept here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Container
from typing import NamedTuple, SupportsFloat

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fairgate.metering.usage import Usage

OTHER = "other"  # the label value of any tenant or model that is not configured
TOKEN_KINDS = ("prompt", "cached_prompt", "completion", "reasoning")
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_ITL = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._tenants: Container[str] | None = None
        self._models: Container[str] | None = None
        self._prefix: dict[tuple[str, str], tuple[int, int]] = {}  # (prompt, cached) totals
        # Labelled children of the per-token histograms, by label values: prometheus_client's
        # labels() validates and locks on every call, and these run once per streamed chunk.
        self._token_children: dict[tuple[str, str], tuple[Histogram, Histogram]] = {}
        # And those a finished request adds to, by (tenant, model, status) label values.
        self._request_children: dict[tuple[str, str, str], _RequestSeries] = {}
        tm = ["tenant", "model"]
        mr = ["model", "replica"]
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
            "fairgate_tokens",
            "Tokens metered, by kind: prompt (cached included), cached_prompt, completion "
            "(reasoning included), reasoning.",
            [*tm, "kind"],
            registry=registry,
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
        self.prefix_prompt = Counter(
            "fairgate_prefix_prompt_tokens",
            "Prompt tokens of finished requests, by the replica that served them.",
            mr,
            registry=registry,
        )
        self.prefix_cached = Counter(
            "fairgate_prefix_cached_tokens",
            "Prompt tokens the engine reported served from its prefix cache, by replica.",
            mr,
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
        self.ledger_failures = Counter(
            "fairgate_ledger_append_failures",
            "Ledger appends that failed (a full disk, a lost database); new work is refused "
            "with 503 until an append succeeds again.",
            registry=registry,
        )
        self.ledger_append = Histogram(
            "fairgate_ledger_append_seconds",
            "Time to sign, chain and commit one record (fsynced with ledger.sync: commit).",
            buckets=_ITL,
            registry=registry,
        )
        self.audits = Counter(
            "fairgate_audits",
            "Audit challenges answered (opened leaves with inclusion proofs).",
            registry=registry,
        )
        self.loop_lag = Gauge(
            "fairgate_event_loop_lag_seconds",
            "How late the gateway's event loop woke for its last health check: work that "
            "blocks the loop, or a starved process, delays every stream and connect.",
            registry=registry,
        )
        self.replica_healthy = Gauge(
            "fairgate_replica_healthy",
            "1 when the replica passes its health check.",
            mr,
            registry=registry,
        )
        self.replica_restarts = Counter(
            "fairgate_replica_restarts",
            "Engine restarts of the replica, as its supervisor reports them.",
            mr,
            registry=registry,
        )
        self.retries = Counter(
            "fairgate_retries",
            "Requests retried on another replica before any output.",
            ["model"],
            registry=registry,
        )

    # bounded labels --------------------------------------------------------------------
    def restrict(self, *, tenants: Container[str], models: Container[str]) -> None:
        """Label only these tenants and models (live containers: a dict that grows is
        followed); everything else becomes ``other``."""
        self._tenants, self._models = tenants, models

    def tenant_label(self, tenant: str) -> str:
        return tenant if self._tenants is None or tenant in self._tenants else OTHER

    def model_label(self, model: str) -> str:
        return model if self._models is None or model in self._models else OTHER

    def labels(self, tenant: str, model: str) -> tuple[str, str]:
        return self.tenant_label(tenant), self.model_label(model)

    # observations ----------------------------------------------------------------------
    def observe_request(
        self,
        tenant: str,
        model: str,
        status: str,
        usage: Usage,
        *,
        replica: str | None = None,
        cost: SupportsFloat | None = None,
        duration: float | None = None,
        queue_wait: float | None = None,
    ) -> None:
        """Everything one finished request adds, under bounded labels."""
        tenant, model = self.labels(tenant, model)
        series = self._request_series(tenant, model, status)
        series.requests.inc()
        for counter, value in zip(series.tokens, _token_values(usage), strict=True):
            counter.inc(value)
        if cost is not None:
            series.cost.inc(float(cost))
        if duration is not None:
            series.duration.observe(duration)
        if queue_wait is not None:
            series.queue_wait.observe(queue_wait)
        if replica is not None and usage.prompt_tokens:
            self.prefix_prompt.labels(model, replica).inc(usage.prompt_tokens)
            self.prefix_cached.labels(model, replica).inc(usage.cached_tokens)
            prompt, cached = self._prefix.get((model, replica), (0, 0))
            self._prefix[model, replica] = (
                prompt + usage.prompt_tokens,
                cached + usage.cached_tokens,
            )

    def prefix_hit_ratio(self, model: str, replica: str) -> float | None:
        """Share of the replica's prompt tokens the engine reported cached, since start."""
        prompt, cached = self._prefix.get((self.model_label(model), replica), (0, 0))
        return cached / prompt if prompt else None

    def _request_series(self, tenant: str, model: str, status: str) -> _RequestSeries:
        """The children for these (already bounded) label values, made once."""
        key = (tenant, model, status)
        series = self._request_children.get(key)
        if series is None:
            series = _RequestSeries(
                self.requests.labels(tenant, model, status),
                tuple(self.tokens.labels(tenant, model, kind) for kind in TOKEN_KINDS),
                self.cost.labels(tenant, model),
                self.duration.labels(tenant, model),
                self.queue_wait.labels(tenant, model),
            )
            self._request_children[key] = series
        return series

    def observe_usage(self, tenant: str, model: str, usage: Usage) -> None:
        tenant, model = self.labels(tenant, model)
        for kind, value in zip(TOKEN_KINDS, _token_values(usage), strict=True):
            self.tokens.labels(tenant, model, kind).inc(value)

    def _token_histograms(self, tenant: str, model: str) -> tuple[Histogram, Histogram]:
        labels = self.labels(tenant, model)
        children = self._token_children.get(labels)
        if children is None:
            children = (self.ttft.labels(*labels), self.itl.labels(*labels))
            self._token_children[labels] = children
        return children

    def observe_first_token(self, tenant: str, model: str, seconds: float) -> None:
        self._token_histograms(tenant, model)[0].observe(seconds)

    def observe_inter_token(self, tenant: str, model: str, seconds: float) -> None:
        self._token_histograms(tenant, model)[1].observe(seconds)

    def replica_added(self, model: str, replica: str) -> None:
        """Create the replica's series at zero, so dashboards see it before any event."""
        model = self.model_label(model)
        self.replica_restarts.labels(model, replica)
        self.prefix_prompt.labels(model, replica)
        self.prefix_cached.labels(model, replica)

    def replica_removed(self, model: str, replica: str) -> None:
        model = self.model_label(model)
        self._prefix.pop((model, replica), None)
        for metric in (
            self.replica_healthy,
            self.replica_restarts,
            self.prefix_prompt,
            self.prefix_cached,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(model, replica)


class _RequestSeries(NamedTuple):
    requests: Counter
    tokens: tuple[Counter, ...]  # in TOKEN_KINDS order
    cost: Counter
    duration: Histogram
    queue_wait: Histogram


def _token_values(usage: Usage) -> tuple[int, int, int, int]:
    """``usage`` in ``TOKEN_KINDS`` order."""
    return (
        usage.prompt_tokens,
        usage.cached_tokens,
        usage.completion_tokens,
        usage.reasoning_tokens,
    )
