"""The Helm chart renders, with Helm's own template engine, into manifests a cluster accepts.

Rendering: helm-python-sdk binds Helm's Go SDK (v4) through a bundled shared library, so these are exactly the
manifests `helm template` would produce, without the helm binary. Validation: every rendered object is checked
against the Kubernetes OpenAPI schemas shipped by kubernetes-validate (strict mode: unknown fields are errors), for
the oldest Kubernetes the chart supports and the newest the package knows. The ServiceMonitor is a Prometheus
Operator CRD with no schema there, so it gets semantic checks instead. Then the chart's promises are checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from tests.deploy.files import CHART, DEPLOY, DOCKERFILE, SECRET_VALUE, load_yaml, parse_dockerfile, require_module
from tollgate.config.loader import parse_config

KUBE_VERSIONS = ("1.25.0", "latest")
# monitoring.coreos.com/v1: Prometheus Operator CRDs, checked semantically below.
NOT_IN_KUBERNETES_SCHEMAS = {"ServiceMonitor", "PrometheusRule"}
BASE = {"secret": {"existingSecret": "tollgate-keys"}}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Render the chart as `helm template gw deploy/helm/tollgate -n ai` would: kind -> the one object of it."""
    helm = require_module("helm_python")
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(_merge(BASE, values or {}), name="gw", namespace="ai", is_install=True)
    objects: dict[str, dict[str, Any]] = {}
    for path, text in files.items():
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert doc["kind"] not in objects, f"two {doc['kind']} objects"
                objects[doc["kind"]] = doc
    return objects


@pytest.fixture(scope="module")
def full() -> dict[str, dict[str, Any]]:
    """Every template on: HPA, PDB, ServiceMonitor (with a bearer token), a chart-made Secret."""
    return render(
        {
            "secret": {"existingSecret": "", "env": {"TOLLGATE_MASTER_KEY": "placeholder", "DATABASE_PASSWORD": "p"}},
            "serviceMonitor": {
                "enabled": True,
                "bearerTokenSecret": {"name": "gw-tollgate", "key": "TOLLGATE_MASTER_KEY"},
            },
            "extraEnv": [{"name": "TOLLGATE_LOG_LEVEL", "value": "debug"}],
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus"}},
        }
    )


@pytest.fixture(scope="module")
def default() -> dict[str, dict[str, Any]]:
    return render()


def _validate_all(objects: dict[str, dict[str, Any]]) -> Iterator[str]:
    kv = require_module("kubernetes_validate")
    for version in KUBE_VERSIONS:
        target = kv.latest_version() if version == "latest" else version
        for kind, obj in objects.items():
            if kind in NOT_IN_KUBERNETES_SCHEMAS:
                continue
            try:
                kv.validate(obj, target, strict=True)
            except kv.ValidationError as exc:
                yield f"{kind} on Kubernetes {target}: {exc.message} at {'/'.join(map(str, exc.path))}"


def test_rendered_manifests_match_the_kubernetes_schemas(
    default: dict[str, dict[str, Any]], full: dict[str, dict[str, Any]]
) -> None:
    assert set(full) == {
        "ConfigMap", "Secret", "ServiceAccount", "Service", "Deployment",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule",
    }  # fmt: skip
    assert not {"Secret", "ServiceMonitor", "PrometheusRule"} & set(default)
    assert list(_validate_all(default)) == []
    assert list(_validate_all(full)) == []


def test_the_schema_check_catches_mistakes(default: dict[str, dict[str, Any]]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(default["Deployment"]))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["pathh"] = container["readinessProbe"]["httpGet"].pop("path")
    errors = list(_validate_all({"Deployment": broken}))
    assert errors and "pathh" in errors[0]


def test_helm_lint_finds_no_error() -> None:
    helm = require_module("helm_python")
    result = helm.lint(str(CHART), BASE, strict=True)
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] > 1] == []  # info only (e.g. "icon is recommended")


def _container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_probes_hit_readiness_and_liveness_on_the_named_port(full: dict[str, dict[str, Any]]) -> None:
    container = _container(full)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["httpGet"]["port"] == "http"
    # The gateway listens where the probes and the Service look, on every interface of the pod.
    env = _env(container)
    assert ports["http"] == int(env["TOLLGATE_PORT"])
    assert env["TOLLGATE_HOST"] == "0.0.0.0"
    assert env["TOLLGATE_LOG_LEVEL"] == "debug"
    # Kubernetes waits longer than the gateway's own 30 s drain before killing it.
    assert full["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30


def test_non_root_read_only_root_filesystem_with_writable_emptydirs(full: dict[str, dict[str, Any]]) -> None:
    pod = full["Deployment"]["spec"]["template"]["spec"]
    container = _container(full)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = int(parse_dockerfile(DOCKERFILE.read_text()).final("USER")[-1].args.split(":")[0])
    assert pod["securityContext"]["runAsUser"] == uid
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    writable = {path for path, m in mounts.items() if not m.get("readOnly")}
    assert writable == {_env(container)["TOLLGATE_DATA_DIR"], "/tmp"}
    for path in writable:
        assert "emptyDir" in volumes[mounts[path]["name"]], f"{path} must be an emptyDir"
    assert pod["automountServiceAccountToken"] is False


def test_config_map_holds_a_valid_config_at_the_path_the_gateway_reads(full: dict[str, dict[str, Any]]) -> None:
    container = _container(full)
    config_path = PurePosixPath(_env(container)["TOLLGATE_CONFIG"])
    (mount,) = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == config_path.parent]
    assert mount["readOnly"] is True
    volume = next(v for v in full["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == full["ConfigMap"]["metadata"]["name"]
    text = full["ConfigMap"]["data"][config_path.name]
    # The real loader: schema, types, interpolation (the password comes from the Secret's env at run time).
    config = parse_config(text, "configmap", {"DATABASE_PASSWORD": "x"})
    assert config.storage.database_url and config.storage.database_url.startswith("postgresql://")
    assert config.rate_limits.counter_url and config.rate_limits.counter_url.startswith("redis://")
    assert "${DATABASE_PASSWORD}" in text and not SECRET_VALUE.search(text)


def test_a_config_change_rolls_the_pods(default: dict[str, dict[str, Any]]) -> None:
    changed = render({"config": {"server": {"log_level": "debug"}}})
    annotation = "checksum/config"
    before = default["Deployment"]["spec"]["template"]["metadata"]["annotations"][annotation]
    after = changed["Deployment"]["spec"]["template"]["metadata"]["annotations"][annotation]
    assert re.fullmatch(r"[0-9a-f]{64}", before) and before != after


def test_secrets_come_from_a_secret_never_from_the_pod_spec(
    default: dict[str, dict[str, Any]], full: dict[str, dict[str, Any]]
) -> None:
    assert _container(default)["envFrom"] == [{"secretRef": {"name": "tollgate-keys"}}]
    secret = full["Secret"]
    assert _container(full)["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert secret["stringData"] == {"TOLLGATE_MASTER_KEY": "placeholder", "DATABASE_PASSWORD": "p"}
    for objects in (default, full):
        for name in _env(_container(objects)):
            assert not re.search("KEY|SECRET|PASSWORD|TOKEN", name), f"{name} must come from the Secret"


def test_rendering_without_a_master_key_fails_clearly() -> None:
    helm = require_module("helm_python")
    with pytest.raises(helm.HelmError, match="TOLLGATE_MASTER_KEY"):
        render({"secret": {"existingSecret": ""}})


def test_service_and_disruption_budget_select_the_pods(full: dict[str, dict[str, Any]]) -> None:
    pod_labels = full["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = full["Service"]["spec"]
    assert service["selector"].items() <= pod_labels.items()
    assert full["Deployment"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (port,) = service["ports"]
    assert port["targetPort"] in {p["name"] for p in _container(full)["ports"]}
    pdb = full["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    # The budget never blocks every drain: fewer pods must stay up than the HPA keeps at least.
    assert pdb["minAvailable"] < full["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    for constraint in full["Deployment"]["spec"]["template"]["spec"]["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()


def test_autoscaler_scales_the_deployment_on_cpu_and_request_rate(full: dict[str, dict[str, Any]]) -> None:
    hpa = full["HorizontalPodAutoscaler"]["spec"]
    deployment = full["Deployment"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    by_type = {m["type"]: m for m in hpa["metrics"]}
    assert by_type["Resource"]["resource"]["name"] == "cpu"
    assert by_type["Resource"]["resource"]["target"]["type"] == "Utilization"
    pods = by_type["Pods"]["pods"]
    assert pods["metric"]["name"] == "tollgate_requests_per_second"
    assert pods["target"]["type"] == "AverageValue"
    # CPU utilisation is relative to the request: the container must have one.
    assert _container(full)["resources"]["requests"]["cpu"]
    assert _container(full)["resources"]["limits"]["memory"]


def test_without_autoscaling_the_deployment_sets_replicas() -> None:
    objects = render({"autoscaling": {"enabled": False}, "replicaCount": 3})
    assert "HorizontalPodAutoscaler" not in objects
    assert objects["Deployment"]["spec"]["replicas"] == 3
    assert list(_validate_all(objects)) == []


def test_service_monitor_scrapes_the_service_as_job_tollgate(full: dict[str, dict[str, Any]]) -> None:
    monitor = full["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    service = full["Service"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"]["matchNames"] == ["ai"]
    # The alert rules match up{job="tollgate"}: the job label comes from this Service label.
    assert service["metadata"]["labels"][spec["jobLabel"]] == "tollgate"
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"]["credentials"] == {"name": "gw-tollgate", "key": "TOLLGATE_MASTER_KEY"}
    allowed = {"port", "path", "interval", "scrapeTimeout", "authorization"}
    assert set(endpoint) <= allowed
    assert set(spec) <= {"jobLabel", "selector", "namespaceSelector", "endpoints"}


def test_prometheus_rule_carries_exactly_the_repository_alert_rules(full: dict[str, dict[str, Any]]) -> None:
    source = DEPLOY / "prometheus" / "alerts.yml"
    # Helm reads files only inside the chart: its copy must not drift from the one Prometheus and compose use.
    assert (CHART / "files" / "alerts.yml").read_bytes() == source.read_bytes()
    rule = full["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    assert rule["spec"] == load_yaml(source)
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(alerts) >= 10 and all(set(r) <= {"alert", "expr", "for", "labels", "annotations"} for r in alerts)
    # Helm did not treat the rules' own {{ $labels.x }} templates as its own.
    assert "{{ $labels.instance }}" in alerts[0]["annotations"]["summary"]


def test_every_top_level_value_is_documented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    values = load_yaml(CHART / "values.yaml")
    for key in values:
        (index,) = [i for i, line in enumerate(lines) if line.startswith(f"{key}:")]
        # Its own block: the indented lines up to the next top-level line.
        body = []
        for line in lines[index + 1 :]:
            if line and not line.startswith(" "):
                break
            body.append(line)
        documented = lines[index - 1].startswith("#") or any(line.strip().startswith("#") for line in body[:3])
        assert documented, f"values.yaml: {key} has no comment"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"autoscalng": {"enabled": False}}, "autoscalng"),
        ({"probes": {"readiness": {"path": "health"}}}, "/probes/readiness/path"),
        ({"config": {"server": {"port": 9000}}}, "/config/server"),  # the chart sets host/port through env
    ],
)
def test_values_schema_rejects_mistakes_before_anything_renders(values: dict[str, Any], message: str) -> None:
    helm = require_module("helm_python")
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        render(values)
