"""The Helm chart with a real helm: lint, render the defaults and every variant in
``helm/fairgate/ci``, validate each object offline (core kinds for Kubernetes 1.30, custom
resources against the upstream CRDs), and load the rendered configuration with fairgate's own
loader so that the chart and the program cannot drift apart."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.helm.chart import (
    CHART,
    CRDS,
    SERVICE_MONITOR_API,
    by_kind,
    merged_config,
    one,
    render,
    validate,
    variant_names,
)
from tests.support.helm import ROOT, helm

REQUIRED_VARIANTS = {"rayservice", "existing-secret", "postgresql", "ingress"}
EXISTING_SECRET = {"admin-key": "sk-existing-admin", "tenant-keys.yaml": "default: [sk-ext-1]\n"}
EXISTING_PG_SECRET = {
    **EXISTING_SECRET,
    "ledger-url": "postgresql://u:p@pg:5432/fg",
    "signing-key.pem": "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n",
}
EXISTING = {"existing-secret": EXISTING_SECRET, "autoscaling": EXISTING_PG_SECRET}


def test_the_crd_copies_match_shared_when_present() -> None:
    shared = ROOT.parent / "shared" / "crds"
    if not shared.is_dir():
        pytest.skip("../shared/crds is not beside this checkout")
    for path in shared.glob("*.yaml"):
        assert (CRDS / path.name).read_bytes() == path.read_bytes(), path.name


def test_the_chart_carries_the_package_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == version and chart["appVersion"] == version
    assert chart["kubeVersion"] == ">=1.28.0-0"


def test_the_required_variants_exist() -> None:
    assert set(variant_names()) >= REQUIRED_VARIANTS


@pytest.mark.parametrize("variant", [None, *variant_names()])
def test_lint_strict(variant: str | None) -> None:
    extra = ["-f", str(CHART / "ci" / f"{variant}.yaml")] if variant else []
    helm("lint", "--strict", str(CHART), *extra)


@pytest.mark.parametrize("variant", [None, *variant_names()])
def test_every_rendered_object_validates(tmp_path: Path, variant: str | None) -> None:
    for api in ((), ("--api-versions", SERVICE_MONITOR_API)):
        objects = render(tmp_path, None, *api, variant=variant)
        assert objects
        for obj in objects:
            validate(obj)


@pytest.mark.parametrize("variant", [None, *variant_names()])
def test_the_rendered_config_loads_in_fairgate(tmp_path: Path, variant: str | None) -> None:
    values = yaml.safe_load((CHART / "ci" / f"{variant}.yaml").read_text()) if variant else {}
    objects = render(tmp_path, variant=variant)
    config, result = merged_config(tmp_path, objects, EXISTING.get(variant or ""))
    assert result.returncode == 0, result.stderr
    assert str(config.data_dir) == "/var/lib/fairgate"
    assert config.listen.host == "0.0.0.0" and config.listen.port == 8000
    assert config.admin_key
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    models = values.get("config", {}).get("models") or chart_values["config"]["models"]
    wanted = [m["name"] for m in models]
    assert [m.name for m in config.models] == wanted
    if values.get("ray", {}).get("enabled", True):
        assert config.ray.address == "ray://rel-fairgate-ray-head-svc:10001"
        assert config.ray.keep_replicas is True
    postgres = values.get("ledger", {}).get("backend") == "postgresql"
    assert (config.ledger.url is not None) == postgres


def test_defaults_deploy_a_gateway_and_a_gpu_ray_cluster(tmp_path: Path) -> None:
    objects = render(tmp_path)
    kinds = by_kind(objects)
    assert set(kinds) == {
        "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "Service",
        "Deployment", "PodDisruptionBudget", "NetworkPolicy", "RayCluster",
    }  # fmt: skip
    cluster = one(objects, "RayCluster")["spec"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # no engine on the head
    (group,) = cluster["workerGroupSpecs"]
    (worker,) = group["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    assert mounts == {"shm": "/dev/shm", "model-cache": "/models"}
    assert {"name": "HF_HOME", "value": "/models"} in worker["env"]
    for pod in (head["template"]["spec"], group["template"]["spec"]):
        assert pod["securityContext"]["runAsNonRoot"] is True
    config, _ = merged_config(tmp_path, objects)
    (model,) = config.models
    assert model.provider == "vllm" and model.resources.num_gpus == 1
    image = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert image.endswith(f":{version}") and worker["image"].endswith(f":{version}")


def test_the_gateway_pod_is_hardened_and_probed(tmp_path: Path) -> None:
    pod = one(render(tmp_path), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
    (gateway,) = pod["containers"]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["resources"]["requests"] and gateway["resources"]["limits"]


def test_sqlite_is_one_writer_on_a_volume(tmp_path: Path) -> None:
    objects = render(tmp_path)
    deployment = one(objects, "Deployment")["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    claim = one(objects, "PersistentVolumeClaim")["metadata"]["name"]
    volumes = {v["name"]: v for v in deployment["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim


def test_postgresql_runs_several_gateways_without_a_volume(tmp_path: Path) -> None:
    objects = render(tmp_path, variant="postgresql")
    kinds = by_kind(objects)
    assert "PersistentVolumeClaim" not in kinds
    deployment = one(objects, "Deployment")["spec"]
    assert deployment["replicas"] == 3 and deployment["strategy"]["type"] == "RollingUpdate"
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    volumes = {v["name"]: v for v in deployment["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"]
    config, _ = merged_config(tmp_path, objects)
    assert config.ledger.url == "postgresql://fairgate:pw@postgresql.db.svc:5432/fairgate"
    keys = {t.name: t.api_keys for t in config.tenants}
    assert keys == {"default": ["sk-ci-default-1"], "team-b": ["sk-ci-team-b-1", "sk-ci-team-b-2"]}
    assert config.audit_key == "sk-ci-audit-1"
    assert "sk-" not in json.dumps(one(objects, "ConfigMap", "fairgate"))  # keys stay secret
    env = {e["name"]: e for e in deployment["template"]["spec"]["containers"][0]["env"]}
    assert env["FAIRGATE_SIGNING_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "signing-key.pem"


def test_the_autoscaler_owns_the_replica_count(tmp_path: Path) -> None:
    objects = render(tmp_path, variant="autoscaling")
    assert "replicas" not in one(objects, "Deployment")["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)


def test_an_existing_secret_replaces_the_generated_one(tmp_path: Path) -> None:
    objects = render(tmp_path, variant="existing-secret")
    assert "Secret" not in by_kind(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["secret"]["secret"]["secretName"] == "fairgate-keys"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["FAIRGATE_SIGNING_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "fairgate-keys"
    config, _ = merged_config(tmp_path, objects, EXISTING_SECRET)
    assert config.admin_key == "sk-existing-admin"


def test_an_existing_secret_without_the_postgresql_keys_stops_the_init_container(
    tmp_path: Path,
) -> None:
    objects = render(tmp_path, variant="autoscaling")
    _, result = merged_config(tmp_path, objects, EXISTING_SECRET)
    assert result.returncode != 0 and "no ledger-url" in result.stderr


def test_the_ingress_routes_to_the_service(tmp_path: Path) -> None:
    objects = render(tmp_path, variant="ingress")
    ingress = one(objects, "Ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    (rule,) = ingress["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = one(objects, "Service")
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert ingress["tls"][0]["hosts"] == ["llm.example.com"]


def test_a_ray_service_replaces_the_ray_cluster(tmp_path: Path) -> None:
    objects = render(tmp_path, variant="rayservice")
    kinds = by_kind(objects)
    assert "RayCluster" not in kinds
    service = one(objects, "RayService")
    assert service["metadata"]["name"] == "rel-fairgate-ray"  # head Service: <name>-head-svc
    assert "echo" in service["spec"]["serveConfigV2"]
    groups = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert groups[0]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]


def test_the_service_monitor_follows_the_cluster_api(tmp_path: Path) -> None:
    api = ("--api-versions", SERVICE_MONITOR_API)
    assert "ServiceMonitor" not in by_kind(render(tmp_path))
    assert "ServiceMonitor" in by_kind(render(tmp_path, None, *api))
    forced = {"metrics": {"serviceMonitor": {"force": True}}}
    assert "ServiceMonitor" in by_kind(render(tmp_path, forced))
    off = {"metrics": {"serviceMonitor": {"enabled": False}}}
    assert "ServiceMonitor" not in by_kind(render(tmp_path, off, *api))


def test_the_service_monitor_scrapes_the_gateway_only(tmp_path: Path) -> None:
    objects = render(tmp_path, variant="autoscaling")
    service, monitor = one(objects, "Service"), one(objects, "ServiceMonitor")
    deployment, cluster = one(objects, "Deployment"), one(objects, "RayCluster")["spec"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    for template in [cluster["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster["workerGroupSpecs"]
    ]:
        assert not service["spec"]["selector"].items() <= template["metadata"]["labels"].items()


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_only_the_gateway_and_ray_reach_the_ray_pods(tmp_path: Path) -> None:
    objects = render(tmp_path)
    policy = one(objects, "NetworkPolicy")["spec"]
    cluster = one(objects, "RayCluster")["spec"]
    ray_pods = [cluster["headGroupSpec"]["template"]["metadata"]["labels"]] + [
        g["template"]["metadata"]["labels"] for g in cluster["workerGroupSpecs"]
    ]
    gateway = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert all(_selects(policy["podSelector"], labels) for labels in ray_pods)
    assert not _selects(policy["podSelector"], gateway)
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert "ports" not in rule  # every port, engines' included, for these peers only
    pod_peers = [p["podSelector"] for p in rule["from"] if "podSelector" in p]
    others = [p for p in rule["from"] if "podSelector" not in p]
    assert any(_selects(peer, gateway) for peer in pod_peers)
    assert all(any(_selects(peer, labels) for peer in pod_peers) for labels in ray_pods)
    stranger = {"app.kubernetes.io/name": "curl", "app.kubernetes.io/instance": "rel"}
    assert not any(_selects(peer, stranger) for peer in pod_peers)
    assert others == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ray-system"}}}
    ]


def test_the_pod_disruption_budget_covers_the_gateway(tmp_path: Path) -> None:
    objects = render(tmp_path, variant="postgresql")
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["maxUnavailable"] == 1 and _selects(pdb["selector"], labels)
    off = {"podDisruptionBudget": {"enabled": False}}
    assert "PodDisruptionBudget" not in by_kind(render(tmp_path, off))


def test_a_config_change_rolls_the_gateway(tmp_path: Path) -> None:
    def checksum(values: dict[str, Any]) -> str:
        pod = one(render(tmp_path, values), "Deployment")["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/config"])

    scheduler = {"policy": "dlpm", "router": "d2lpm", "max_inflight_per_replica": 16}
    base = {"config": {"scheduler": scheduler}}
    changed = {"config": {"scheduler": {**scheduler, "max_inflight_per_replica": 8}}}
    assert checksum(base) == checksum(base)
    assert checksum(base) != checksum(changed)
    assert checksum(base) == checksum({**base, "logLevel": "debug"})  # not a config change


def test_the_dashboard_is_provisioned_for_grafana(tmp_path: Path) -> None:
    dashboard = one(render(tmp_path), "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "fairgate.json").read_text())
    assert json.loads(dashboard["data"]["fairgate.json"]) == shipped


def test_validation_catches_mistakes(tmp_path: Path) -> None:
    objects = render(tmp_path, variant="autoscaling")
    broken = copy.deepcopy(one(objects, "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullpolicy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    broken = copy.deepcopy(one(objects, "RayCluster"))
    broken["spec"]["workerGroupSpecs"][0]["replica"] = 2  # a typo of "replicas"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = copy.deepcopy(one(objects, "ServiceMonitor"))
    broken["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
