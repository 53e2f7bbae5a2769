"""Values the chart must refuse, each with a message that names what to set: the schema
(values.schema.json) for what it can express, the templates for the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import CHART, render_error

PG_URL = "postgresql://u:p@pg:5432/fg"
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    (
        "sqlite, several gateways",
        {"replicaCount": 2},
        "replicaCount: Must be less than or equal to 1",
    ),
    ("sqlite, autoscaling", {"autoscaling": {"enabled": True}}, "autoscaling.enabled"),
    ("unknown top-level key", {"replicas": 2}, "Additional property replicas is not allowed"),
    ("unknown nested key", {"ray": {"workerGroup": []}}, "Additional property workerGroup"),
    ("bad Ray kind", {"ray": {"kind": "RayJob"}}, "ray.kind"),
    ("bad ledger backend", {"ledger": {"backend": "mysql"}}, "ledger.backend"),
    ("ingress without hosts", {"ingress": {"enabled": True}}, "ingress.hosts"),
    ("no image repository", {"image": {"repository": ""}}, "image.repository"),
    ("no GPU worker group", {"ray": {"workerGroups": []}}, "ray.workerGroups"),
    ("bad ledger URL", {"secrets": {"ledgerUrl": "mysql://x"}}, "secrets.ledgerUrl"),
    ("listen set in config", {"config": {"listen": {"port": 9}}}, "config.listen"),
    ("admin key in config", {"config": {"admin_key": "x"}}, "config"),
    (
        "tenant keys in config",
        {"config": {"tenants": [{"name": "a", "api_keys": ["k"]}]}},
        "config.tenants.0",
    ),
    # The templates: combinations and messages the schema cannot give.
    ("postgresql without a URL", {"ledger": {"backend": "postgresql"}}, "needs secrets.ledgerUrl"),
    (
        "postgresql without a signing key",
        {"ledger": {"backend": "postgresql"}, "secrets": {"ledgerUrl": PG_URL}},
        "needs secrets.signingKey",
    ),
    ("a URL but sqlite", {"secrets": {"ledgerUrl": PG_URL}}, "set ledger.backend=postgresql"),
    (
        "several gateways that stop the engines",
        {
            "replicaCount": 2,
            "ledger": {"backend": "postgresql"},
            "secrets": {"existingSecret": "keys"},
            "ray": {"keepReplicas": False},
        },
        "ray.keepReplicas=false with several gateway pods",
    ),
    ("vllm without Ray", {"ray": {"enabled": False}}, "set config.ray.address"),
    ("ledger URL in config", {"config": {"ledger": {"url": PG_URL}}}, "config.ledger"),
]


@pytest.mark.parametrize(
    ("values", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_refused_with_a_clear_message(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    assert message in render_error(tmp_path, values)


def test_the_schema_knows_every_default_key() -> None:
    """Each key of values.yaml is declared in the schema (the schema refuses unknown keys, so
    a key added to values.yaml alone would fail every install)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Any, spec: dict[str, Any], path: str) -> None:
        if not isinstance(node, dict) or spec.get("additionalProperties", True) is not False:
            return  # free-form (config: fairgate's loader checks it, in test_chart.py)
        for key, value in node.items():
            assert key in spec["properties"], f"{path}{key} is not in values.schema.json"
            walk(value, spec["properties"][key], f"{path}{key}.")

    walk(values, schema, "")
