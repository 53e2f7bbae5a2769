"""The Grafana dashboard: well-formed JSON that Grafana can import, querying only fairgate's
own metrics through variables it defines. (``tests/e2e/test_prometheus.py`` runs every
expression against a real Prometheus and requires data back.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).parents[2] / "helm" / "fairgate" / "dashboards" / "fairgate.json"
GRAFANA_BUILTINS = {"__rate_interval", "__range", "__interval"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def targets(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(p, t) for p in dashboard["panels"] for t in p.get("targets", [])]


def test_top_level_fields(dashboard: dict) -> None:
    assert dashboard["uid"] == "fairgate" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard  # Grafana assigns it; a fixed id breaks provisioning
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names == ["datasource", "tenant", "model"]


def test_panels_are_well_formed(dashboard: dict) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["datasource"] == DATASOURCE
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]


def test_sections_cover_the_issue(dashboard: dict) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == [
        "Traffic, tokens and cost",
        "Latency",
        "Queues and fairness",
        "Prefix cache",
        "Replicas",
        "Metering",
    ]
    exprs = " ".join(t["expr"] for _, t in targets(dashboard))
    assert exprs.count("histogram_quantile(") >= 8
    for needed in (
        "fairgate_tokens_total",
        "fairgate_cost_total",
        "fairgate_fairness_jain_index",
        "fairgate_prefix_cached_tokens_total",
        "fairgate_replica_healthy",
    ):
        assert needed in exprs, needed


def test_expressions_use_fairgate_metrics_and_known_variables(dashboard: dict) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]} | GRAFANA_BUILTINS
    for panel, target in targets(dashboard):
        expr = target["expr"]
        assert target["datasource"] == DATASOURCE
        assert expr.count("(") == expr.count(")"), expr
        assert "vllm:" not in expr
        for variable in re.findall(r"\$\{?(\w+)", expr):
            assert variable in defined, (panel["title"], variable)
        for metric in re.findall(r"\b([a-z_:]+)(?=\{|\[)", expr):
            assert metric.startswith("fairgate_"), (panel["title"], metric)
