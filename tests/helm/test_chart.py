"""The Helm chart, checked with a real helm (lint, template) and validated offline: core kinds
with kubernetes-validate, custom resources against the upstream CRDs in ``tests/helm/crds``
(copies of ``../shared/crds``), converted to JSON Schema the way kubeconform does."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fairgate.gateway.config import parse_config
from tests.support.helm import ROOT, helm

CHART = ROOT / "helm" / "fairgate"
CRDS = Path(__file__).parent / "crds"
KUBERNETES = "1.30.0"
CORE_KINDS = {
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Service",
    "Deployment",
}
FULL_VALUES = {
    "secrets": {
        "tenantKeys": {"default": ["sk-default-1"], "extra": ["sk-extra-1", "sk-extra-2"]},
        "ledgerUrl": "postgresql://fg:pw@pg:5432/fairgate",
        "auditKey": "sk-audit-1",
        "signingKey": "-----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY-----\n",
    },
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "ray": {"cluster": {"enabled": True}, "service": {"enabled": True}},
}
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def render(
    tmp_path: Path, values: dict[str, Any] | None = None, *extra: str
) -> list[dict[str, Any]]:
    args = ["template", "rel", str(CHART), "--namespace", "llm", "--kube-version", KUBERNETES]
    if values is not None:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["-f", str(path)]
    output = helm(*args, *extra).stdout
    return [doc for doc in yaml.load_all(output, Loader=Loader) if doc]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


# -- kubeconform's conversion of a CRD's openAPIV3Schema ------------------------------------
def to_json_schema(node: Any) -> Any:
    """int-or-string -> integer or string; nullable -> null allowed; objects with declared
    properties reject unknown ones (kubeconform's strict mode) unless they preserve them."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_json_schema(value) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        for key in ("type", "format", "anyOf", "oneOf"):
            out.pop(key, None)
        out["oneOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crds() -> tuple[dict[str, Any], ...]:
    return tuple(yaml.load(p.read_text(), Loader=Loader) for p in sorted(CRDS.glob("*.yaml")))


@cache
def crd_validator(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    for crd in crds():
        if crd["spec"]["names"]["kind"] != kind:
            continue
        group = crd["spec"]["group"]
        for version in crd["spec"]["versions"]:
            if f"{group}/{version['name']}" == api_version:
                schema = to_json_schema(version["schema"]["openAPIV3Schema"])
                return jsonschema.Draft7Validator(schema)
    raise LookupError(f"no CRD for {api_version} {kind} in {CRDS}")


def validate(obj: dict[str, Any]) -> None:
    if obj["kind"] in CORE_KINDS:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    else:
        crd_validator(obj["kind"], obj["apiVersion"]).validate(obj)


# -- tests ------------------------------------------------------------------------------------
def test_the_crd_copies_match_shared_when_present() -> None:
    shared = ROOT.parent / "shared" / "crds"
    if not shared.is_dir():
        pytest.skip("../shared/crds is not beside this checkout")
    for path in shared.glob("*.yaml"):
        assert (CRDS / path.name).read_bytes() == path.read_bytes(), path.name


def test_lint(tmp_path: Path) -> None:
    helm("lint", "--strict", str(CHART))
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(FULL_VALUES))
    helm("lint", "--strict", str(CHART), "-f", str(tmp_path / "values.yaml"))


def test_defaults_render_valid_core_objects(tmp_path: Path) -> None:
    objects = render(tmp_path)
    kinds = by_kind(objects)
    assert set(kinds) == CORE_KINDS
    assert len(kinds["ConfigMap"]) == 2  # the configuration and the dashboard
    for obj in objects:
        validate(obj)


def test_everything_enabled_renders_valid_objects(tmp_path: Path) -> None:
    objects = render(tmp_path, FULL_VALUES)
    kinds = by_kind(objects)
    assert set(kinds) == CORE_KINDS | {"ServiceMonitor", "RayCluster", "RayService"}
    for obj in objects:
        validate(obj)


def test_validation_catches_mistakes(tmp_path: Path) -> None:
    kinds = by_kind(render(tmp_path, FULL_VALUES))
    broken = copy.deepcopy(kinds["Deployment"][0])
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullpolicy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    broken = copy.deepcopy(kinds["RayCluster"][0])
    broken["spec"]["workerGroupSpecs"][0]["replica"] = 2  # a typo of "replicas"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = copy.deepcopy(kinds["ServiceMonitor"][0])
    broken["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_the_service_monitor_scrapes_the_gateway_only(tmp_path: Path) -> None:
    kinds = by_kind(render(tmp_path, FULL_VALUES))
    (service,) = kinds["Service"]
    (monitor,) = kinds["ServiceMonitor"]
    (deployment,) = kinds["Deployment"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    for kind in ("RayCluster", "RayService"):
        spec = kinds[kind][0]["spec"]
        cluster = spec.get("rayClusterConfig", spec)
        for template in [cluster["headGroupSpec"]["template"]] + [
            group["template"] for group in cluster["workerGroupSpecs"]
        ]:
            labels = template["metadata"]["labels"]
            assert not service["spec"]["selector"].items() <= labels.items()


def test_the_dashboard_is_provisioned_for_grafana(tmp_path: Path) -> None:
    configmaps = by_kind(render(tmp_path))["ConfigMap"]
    (dashboard,) = [c for c in configmaps if c["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "fairgate.json").read_text())
    assert json.loads(dashboard["data"]["fairgate.json"]) == shipped


def test_config_and_secret_merge_into_a_valid_gateway_config(tmp_path: Path) -> None:
    kinds = by_kind(render(tmp_path, FULL_VALUES))
    (configmap,) = [c for c in kinds["ConfigMap"] if "config.yaml" in c["data"]]
    (secret,) = kinds["Secret"]
    (deployment,) = kinds["Deployment"]
    assert "sk-" not in json.dumps(configmap)  # no key in the ConfigMap
    (config_dir := tmp_path / "config").mkdir()
    (secret_dir := tmp_path / "secret").mkdir()
    for name, text in configmap["data"].items():
        (config_dir / name).write_text(text)
    for name, value in secret["data"].items():
        (secret_dir / name).write_bytes(base64.b64decode(value))
    out = tmp_path / "config.yaml"
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][:2] == ["python", "/etc/fairgate/config/merge-config.py"]
    subprocess.run(
        [
            sys.executable,
            str(config_dir / "merge-config.py"),
            str(config_dir / "config.yaml"),
            str(secret_dir),
            str(out),
        ],
        check=True,
    )
    assert out.stat().st_mode & 0o077 == 0
    config = parse_config(yaml.safe_load(out.read_text()))
    keys = {t.name: t.api_keys for t in config.tenants}
    assert keys == {"default": ["sk-default-1"], "extra": ["sk-extra-1", "sk-extra-2"]}
    assert config.admin_key and config.admin_key.startswith("sk-fg-admin-")
    assert config.audit_key == "sk-audit-1"
    assert config.ledger.url == "postgresql://fg:pw@pg:5432/fairgate"
    assert str(config.data_dir) == "/var/lib/fairgate"
    assert config.listen.host == "0.0.0.0" and config.listen.port == 8000
    assert config.ray.address == "ray://rel-fairgate-ray-head-svc:10001"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["fairgate", "serve", "--config", "/run/fairgate/config.yaml"]
    signing = {e["name"]: e for e in container["env"]}["FAIRGATE_SIGNING_KEY"]
    assert signing["valueFrom"]["secretKeyRef"]["key"] == "signing-key.pem"


def test_an_existing_secret_replaces_the_generated_one(tmp_path: Path) -> None:
    kinds = by_kind(render(tmp_path, {"secrets": {"existingSecret": "fairgate-keys"}}))
    assert "Secret" not in kinds
    volumes = {v["name"]: v for v in kinds["Deployment"][0]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["secret"]["secret"]["secretName"] == "fairgate-keys"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"admin_key": "x"}}, "secrets.adminKey"),
        ({"config": {"audit_key": "x"}}, "secrets.auditKey"),
        ({"config": {"tenants": [{"name": "a", "api_keys": ["sk-a"]}]}}, "secrets.tenantKeys"),
    ],
)
def test_secrets_in_the_config_are_refused(tmp_path: Path, values: dict, message: str) -> None:
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    result = helm("template", "rel", str(CHART), "-f", str(tmp_path / "values.yaml"), check=False)
    assert result.returncode != 0 and message in result.stderr
