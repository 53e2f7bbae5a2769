"""A real Prometheus scrapes a real gateway: what the clients saw comes back through PromQL,
and every expression of the Grafana dashboard returns data.

The gateway serves sim models plus an ``openai`` model whose only replica is a fake engine
serving vLLM 0.32's own /metrics exposition, so the engine re-exports are scraped too.
Prometheus (Debian's ``prometheus`` package; ``.ci/run`` installs it) runs on loopback in a
temporary directory with a 1 s scrape interval, and is stopped by the fixture.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_engine import FakeEngine
from tests.support.gateway_server import GatewayServer, sim_config
from tests.support.prometheus import Prometheus, binary

pytestmark = pytest.mark.e2e

DASHBOARD = Path(__file__).parents[2] / "helm" / "fairgate" / "dashboards" / "fairgate.json"
LONG = " ".join(f"token{i}" for i in range(48))  # three sim cache blocks: repeats hit
ALL_SERIES = '{job="fairgate", __name__=~"fairgate_.+"}[1m]'
# Grafana's variables, as a user who picked "All" over the last few minutes would have them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "5m",
    "$tenant": ".*",
    "$model": ".*",
}


def wait_for(condition, timeout: float = 30, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def config(data_dir: Path, engine_url: str) -> Any:
    models = [m.model_dump() for m in sim_config(data_dir).models]
    prices = {"prompt": 100, "cached_prompt": 10, "completion": 400, "reasoning": 400}
    for model in models:
        model["prices"] = prices
    models.append({"name": "engine", "provider": "openai", "endpoints": [engine_url]})
    return sim_config(data_dir, models=models)


def send_traffic(server: GatewayServer) -> dict[str, Any]:
    """Requests from both tenants, streaming and not, plus failures; what the clients saw."""
    seen: dict[str, Any] = {"reasoning": Counter(), "completion": Counter(), "status": Counter()}

    def note(tenant: str, usage: Any) -> None:
        seen["reasoning"][tenant] += usage.completion_tokens_details.reasoning_tokens
        seen["completion"][tenant] += usage.completion_tokens
        seen["status"]["ok"] += 1

    for tenant, key in (("alice", "sk-alice"), ("bob", "sk-bob")):
        api = openai.OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)
        for i in range(4 if tenant == "alice" else 2):
            messages = [{"role": "user", "content": LONG}]
            if i % 2:
                chunks = list(
                    api.chat.completions.create(
                        model="sim-hidden",
                        messages=messages,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                )
                note(tenant, chunks[-1].usage)
            else:
                note(
                    tenant, api.chat.completions.create(model="sim-hidden", messages=messages).usage
                )
        note(tenant, api.chat.completions.create(model="sim-visible", messages=messages).usage)
        with pytest.raises(openai.NotFoundError):
            api.chat.completions.create(model="no-such-model", messages=messages)
        seen["status"]["model_not_found"] += 1
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=server.base_url + "/v1", api_key="sk-nobody", max_retries=0
        ).models.list()
    return seen


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayServer, Prometheus, dict]]:
    workdir = tmp_path_factory.mktemp("prometheus")
    with FakeEngine() as engine:
        server = GatewayServer(config(tmp_path_factory.mktemp("gateway"), engine.url))
        server.runtime.telemetry.interval = 0.5
        with server:
            prometheus = Prometheus(workdir, f"127.0.0.1:{server.port}")
            try:
                prometheus.wait_ready()
                assert wait_for(lambda: prometheus.scalar('up{job="fairgate"}') == 1), "no scrape"
                seen = send_traffic(server)
                total = sum(seen["status"].values())
                # Wait until a scrape after the traffic is stored, and until every series has
                # two samples, as rate() needs.
                assert wait_for(
                    lambda: prometheus.scalar("sum(fairgate_requests_total)") == total
                ), prometheus.query("fairgate_requests_total")
                assert wait_for(
                    lambda: min(len(r["values"]) for r in prometheus.query(ALL_SERIES)) >= 2
                )
                yield server, prometheus, seen
            finally:
                prometheus.stop()
        assert prometheus.process.returncode is not None


def test_reasoning_and_completion_tokens_match_what_clients_saw(stack) -> None:
    _, prometheus, seen = stack
    reasoning = prometheus.by('sum by (tenant) (fairgate_tokens_total{kind="reasoning"})', "tenant")
    assert reasoning == {t: float(n) for t, n in seen["reasoning"].items()}
    assert all(v > 0 for v in reasoning.values())
    completion = prometheus.by(
        'sum by (tenant) (fairgate_tokens_total{kind="completion"})', "tenant"
    )
    assert completion == {t: float(n) for t, n in seen["completion"].items()}


def test_request_counts_by_status_and_bounded_labels(stack) -> None:
    _, prometheus, seen = stack
    statuses = prometheus.by("sum by (status) (fairgate_requests_total)", "status")
    assert statuses == {s: float(n) for s, n in seen["status"].items()}
    unknown = prometheus.scalar('sum(fairgate_requests_total{model="other"})')
    assert unknown == seen["status"]["model_not_found"]
    assert prometheus.scalar("fairgate_auth_failures_total") == 1
    assert set(prometheus.label_values("tenant", '{job="fairgate"}')) <= {"alice", "bob", "other"}
    assert "no-such-model" not in prometheus.label_values("model", '{job="fairgate"}')


def test_cost_scheduler_and_engine_series(stack) -> None:
    _, prometheus, seen = stack
    cost = prometheus.by("sum by (tenant) (fairgate_cost_total)", "tenant")
    assert cost["alice"] > cost["bob"] > 0  # alice sent more
    assert (
        prometheus.scalar('sum(fairgate_scheduler_decisions_total{kind="admit"})')
        == seen["status"]["ok"]
    )
    assert 0 < prometheus.scalar("fairgate_fairness_jain_index") <= 1
    assert prometheus.scalar('fairgate_engine_requests_waiting{replica="engine-0"}') == 2
    assert prometheus.scalar('fairgate_engine_kv_cache_usage_ratio{replica="engine-0"}') == 0.25
    assert prometheus.scalar("sum(fairgate_prefix_cached_tokens_total)") > 0
    assert prometheus.scalar("count(fairgate_replica_healthy == 1)") == 5


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(expr: str) -> str:
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_every_dashboard_expression_returns_data(stack) -> None:
    _, prometheus, _ = stack
    expressions = dashboard_expressions()
    assert len(expressions) > 30
    empty = [(title, expr) for title, expr in expressions if not prometheus.query(substitute(expr))]
    assert not empty, empty


def test_dashboard_variables_resolve(stack) -> None:
    _, prometheus, _ = stack
    dashboard = json.loads(DASHBOARD.read_text())
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"])
        assert match, variable
        assert prometheus.label_values(match[2], match[1]), variable["name"]


def test_promtool_accepts_the_scraped_exposition(stack) -> None:
    server, _, _ = stack
    text = httpx.get(server.base_url + "/metrics").text
    result = subprocess.run(
        [binary("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for secret in ("sk-alice", "sk-bob", "sk-nobody", "admin-secret"):
        assert secret not in text
