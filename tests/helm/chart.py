"""Rendering the chart with a real helm and validating what it renders, offline: core kinds with
kubernetes-validate, custom resources against the upstream CRDs in ``tests/helm/crds`` (copies of
``../shared/crds``), converted to JSON Schema the way kubeconform does."""

from __future__ import annotations

import base64
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from fairgate.gateway.config import Config, parse_config
from tests.support.helm import ROOT, helm

CHART = ROOT / "helm" / "fairgate"
VARIANTS = CHART / "ci"  # chart-testing's convention: one values file per variant
CRDS = Path(__file__).parent / "crds"
KUBERNETES = "1.30.0"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
CUSTOM_KINDS = {"RayCluster", "RayService", "ServiceMonitor"}
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Objects = list[dict[str, Any]]


def variant_names() -> list[str]:
    return sorted(p.stem for p in VARIANTS.glob("*.yaml"))


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / f"values-{len(list(tmp_path.glob('values-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def template_args(tmp_path: Path, values: dict[str, Any] | None, variant: str | None) -> list[str]:
    args = ["template", "rel", str(CHART), "--namespace", "llm", "--kube-version", KUBERNETES]
    if variant is not None:
        args += ["-f", str(VARIANTS / f"{variant}.yaml")]
    if values is not None:
        args += ["-f", str(values_file(tmp_path, values))]
    return args


def render(
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    *extra: str,
    variant: str | None = None,
) -> Objects:
    output = helm(*template_args(tmp_path, values, variant), *extra).stdout
    return [doc for doc in yaml.load_all(output, Loader=Loader) if doc]


def render_error(tmp_path: Path, values: dict[str, Any], variant: str | None = None) -> str:
    """helm's error output for values that must not render."""
    result = helm(*template_args(tmp_path, values, variant), check=False)
    assert result.returncode != 0, f"rendered although it should not:\n{result.stdout[:2000]}"
    return result.stderr


def by_kind(objects: Objects) -> dict[str, Objects]:
    kinds: dict[str, Objects] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


def one(objects: Objects, kind: str, suffix: str = "") -> dict[str, Any]:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    return obj


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
    if obj["kind"] in CUSTOM_KINDS:
        crd_validator(obj["kind"], obj["apiVersion"]).validate(obj)
    else:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


# -- the gateway's configuration, as its init container assembles it -------------------------
def secret_files(objects: Objects, existing: dict[str, str] | None = None) -> dict[str, bytes]:
    """The Secret's keys as the pod sees them: the chart's Secret, or ``existing`` when the
    chart was told to use an existing one (and so renders none)."""
    secrets = [o for o in objects if o["kind"] == "Secret"]
    if existing is not None:
        assert not secrets
        return {name: value.encode() for name, value in existing.items()}
    (secret,) = secrets
    return {name: base64.b64decode(value) for name, value in secret["data"].items()}


def merged_config(
    tmp_path: Path, objects: Objects, existing: dict[str, str] | None = None
) -> tuple[Config, subprocess.CompletedProcess[str]]:
    """Run the init container's command (merge-config.py from the ConfigMap) on the rendered
    ConfigMap and Secret, then load the result with fairgate's own loader."""
    configmap = one(objects, "ConfigMap", "fairgate")
    deployment = one(objects, "Deployment")
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    config_dir, secret_dir = tmp_path / "etc-config", tmp_path / "etc-secret"
    config_dir.mkdir()
    secret_dir.mkdir()
    for name, text in configmap["data"].items():
        (config_dir / name).write_text(text)
    for name, data in secret_files(objects, existing).items():
        (secret_dir / name).write_bytes(data)
    out = tmp_path / "run-config.yaml"
    command = [
        arg.replace("/etc/fairgate/config", str(config_dir))
        .replace("/etc/fairgate/secret", str(secret_dir))
        .replace("/run/fairgate/config.yaml", str(out))
        for arg in init["command"]
    ]
    assert command[0] == "python"
    result = subprocess.run(
        [sys.executable, *command[1:]], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        return parse_config({}), result
    assert out.stat().st_mode & 0o077 == 0  # keys readable by the gateway's user only
    return parse_config(yaml.safe_load(out.read_text()), str(out)), result
