"""What an operator expects of a well-kept chart (issue 14): disruption budget, spread and
priority, extra env and volumes, Ingress and Gateway API routes for the plain Deployment,
monitoring and routes gated on their CRDs, Chart.yaml metadata."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import (
    CHART,
    HELMS,
    REPO,
    find,
    pod_spec,
    render,
    run_tool,
    schema_problems,
)

ROUTES = "routes-kserve-off-values.yaml"
KSERVE_EXTRAS = "auth-values.yaml"
HTTPROUTE_VALUES = REPO / "tests" / "chart" / "testdata" / "httproute-values.yaml"
# The CRDs the chart's objects are validated against: the operators' own, unmodified.
CRDS = REPO / "tests" / "cluster" / "crds"


def selector_labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "california-housing",
        "app.kubernetes.io/instance": "ch",
        "app.kubernetes.io/component": component,
    }


def predictor_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    isvc = find(docs, "InferenceService")
    if isvc:
        return isvc[0]["spec"]["predictor"]
    return pod_spec(find(docs, "Deployment", "-predictor")[0])


def test_pdb_selects_the_predictor_pods_in_both_modes(tools) -> None:
    assert not find(render("helm4"), "PodDisruptionBudget")
    for value_set, budget in ((ROUTES, 1), (KSERVE_EXTRAS, "50%")):
        docs = render("helm4", value_set)
        (pdb,) = find(docs, "PodDisruptionBudget")
        assert pdb["apiVersion"] == "policy/v1"
        assert pdb["spec"]["maxUnavailable"] == budget
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector == selector_labels("predictor")
        isvc = find(docs, "InferenceService")
        pod_labels = (
            isvc[0]["spec"]["predictor"]["labels"]
            if isvc
            else find(docs, "Deployment", "-predictor")[0]["spec"]["template"]["metadata"]["labels"]
        )
        assert selector.items() <= pod_labels.items(), value_set


def test_spread_and_priority_of_the_predictor(tools) -> None:
    for value_set in (ROUTES, KSERVE_EXTRAS):
        pod = predictor_pod(render("helm4", value_set))
        assert pod["priorityClassName"] == "california-housing-serving"
        (constraint,) = pod["topologySpreadConstraints"]
        assert constraint["topologyKey"] == "kubernetes.io/hostname"
        # filled in: without a selector the constraint would count no pod at all
        assert constraint["labelSelector"] == {"matchLabels": selector_labels("predictor")}
    default = predictor_pod(render("helm4"))
    assert "priorityClassName" not in default and "topologySpreadConstraints" not in default


def test_an_explicit_label_selector_is_kept(tools) -> None:
    own = {"matchLabels": {"team": "ml"}}
    docs = render(
        "helm4",
        None,
        (
            "predictor.topologySpreadConstraints[0].maxSkew=2",
            "predictor.topologySpreadConstraints[0].topologyKey=zone",
            "predictor.topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
            "predictor.topologySpreadConstraints[0].labelSelector.matchLabels.team=ml",
        ),
    )
    assert predictor_pod(docs)["topologySpreadConstraints"][0]["labelSelector"] == own


def test_extra_env_and_volumes_on_predictor_jobs_and_mlflow(tools) -> None:
    docs = render("helm4", ROUTES)
    values = yaml.safe_load((CHART / "ci" / ROUTES).read_text())
    pods = {
        "predictor": predictor_pod(docs),
        "training": pod_spec(find(docs, "Job")[0]),
        "retrain": pod_spec(find(docs, "CronJob")[0]),
        "mlflow": pod_spec(find(docs, "Deployment", "-mlflow")[0]),
    }
    for name, pod in pods.items():
        extras = values[
            "predictor" if name == "predictor" else "mlflow" if name == "mlflow" else "training"
        ]
        container = pod["containers"][0]
        for entry in extras["extraEnv"]:
            assert entry in container["env"], name
            # the chart's own variables stay: the extra ones come after them
            assert container["env"].index(entry) == len(container["env"]) - 1, name
        assert extras["extraVolumeMounts"][0] in container["volumeMounts"], name
        assert extras["extraVolumes"][0] in pod["volumes"], name
        if name != "predictor":
            assert pod["priorityClassName"] == extras["priorityClassName"], name


def test_ingress_routes_to_the_predictor_service(tools) -> None:
    docs = render("helm4", ROUTES)
    (ingress,) = find(docs, "Ingress")
    (service,) = find(docs, "Service", "-predictor")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "california-housing-tls", "hosts": ["california-housing.example.com"]}
    ]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "california-housing.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert not find(render("helm4"), "Ingress")


@pytest.fixture(scope="session")
def httproute_crd() -> Path:
    """The Gateway API's HTTPRoute CRD (standard channel), unmodified, kept beside the
    operators' CRDs the test cluster installs (tests/cluster/crds/README.md)."""
    return CRDS / "gateway-api-v1.2.1" / "gateway.networking.k8s.io_httproutes.yaml"


def crd_problems(crd: Path, objects: list[dict[str, Any]]) -> list[str]:
    return schema_problems("validate_crd.py", objects, str(crd), "v1")


@pytest.mark.parametrize("helm", HELMS)
def test_httproute_is_valid_for_the_gateway_api_crd(tools, helm: str, httproute_crd: Path) -> None:
    lint = run_tool(helm, "lint", "--strict", str(CHART), "-f", str(HTTPROUTE_VALUES))
    assert "0 chart(s) failed" in lint.stdout
    text = run_tool(
        helm, "template", "ch", str(CHART), "-n", "california-housing", "-f", str(HTTPROUTE_VALUES)
    ).stdout
    docs = [d for d in yaml.safe_load_all(text) if d]
    (route,) = find(docs, "HTTPRoute")
    (service,) = find(docs, "Service", "-predictor")
    assert crd_problems(httproute_crd, [route]) == []
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"] == service["spec"]["ports"][0]["port"]
    assert route["spec"]["parentRefs"][0]["name"] == "public"


def test_the_crd_check_catches_an_unknown_field(tools, httproute_crd: Path) -> None:
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "x"},
        "spec": {"parentRefs": [{"name": "g", "sectionNme": "typo"}]},
    }
    (problem,) = crd_problems(httproute_crd, [route])
    assert "sectionNme" in problem


@pytest.mark.parametrize(
    "sets",
    [
        ("predictor.ingress.enabled=true",),
        ("predictor.httpRoute.enabled=true", "predictor.httpRoute.parentRefs[0].name=g"),
    ],
    ids=["ingress", "httproute"],
)
def test_routes_need_the_plain_deployment(tools, sets: tuple[str, ...]) -> None:
    args = [a for s in sets for a in ("--set", s)]
    result = run_tool("helm4", "template", "x", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert "set kserve.enabled=false" in result.stderr


# A cluster as `helm install` sees it: the API server's own groups, plus these.
CLUSTER = ("apiregistration.k8s.io/v1", "v1", "apps/v1", "batch/v1", "policy/v1")


def render_against(extra_apis: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    apis = [a for api in (*CLUSTER, *extra_apis) for a in ("--api-versions", api)]
    return run_tool("helm4", "template", "x", str(CHART), *apis, *args, check=False)


def test_monitoring_objects_need_their_crds_or_fail_clearly(tools) -> None:
    result = render_against(("serving.kserve.io/v1beta1/InferenceService",))
    assert result.returncode != 0
    assert "The cluster lacks the CRDs these values need" in result.stderr
    assert "ServiceMonitor (Prometheus Operator; metrics.serviceMonitor.enabled=false)" in (
        result.stderr
    )
    assert "PrometheusRule (Prometheus Operator; metrics.prometheusRule.enabled=false)" in (
        result.stderr
    )
    turned_off = render_against(
        ("serving.kserve.io/v1beta1/InferenceService",),
        "--set",
        "metrics.serviceMonitor.enabled=false",
        "--set",
        "metrics.prometheusRule.enabled=false",
    )
    assert turned_off.returncode == 0, turned_off.stderr
    with_crds = render_against(
        (
            "serving.kserve.io/v1beta1/InferenceService",
            "monitoring.coreos.com/v1/ServiceMonitor",
            "monitoring.coreos.com/v1/PrometheusRule",
        )
    )
    assert with_crds.returncode == 0, with_crds.stderr
    assert "kind: PrometheusRule" in with_crds.stdout


def test_httproute_needs_the_gateway_api_crd(tools) -> None:
    values = (
        "-f",
        str(HTTPROUTE_VALUES),
        "--set",
        "metrics.serviceMonitor.enabled=false",
        "--set",
        "metrics.prometheusRule.enabled=false",
    )
    missing = render_against((), *values)
    assert missing.returncode != 0
    assert "HTTPRoute (Gateway API; predictor.httpRoute.enabled=false)" in missing.stderr
    present = render_against(("gateway.networking.k8s.io/v1/HTTPRoute",), *values)
    assert present.returncode == 0, present.stderr


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["home"].startswith("https://github.com/")
    assert chart["sources"] and all(s.startswith("https://") for s in chart["sources"])
    assert all(m["name"] and "@" in m["email"] for m in chart["maintainers"])
    assert chart["kubeVersion"]
    # the runbook the alerts link to is in the sources the chart names
    runbook = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["runbookUrl"]
    assert runbook.startswith(chart["home"] + "/blob/")


def test_notes_tell_how_to_reach_the_ingress_and_the_route(tools) -> None:
    for values, text in (
        (CHART / "ci" / ROUTES, "curl -s https://california-housing.example.com/v1/models/"),
        (HTTPROUTE_VALUES, "get httproute ch-california-housing-predictor"),
    ):
        result = run_tool(
            "helm4", "install", "ch", str(CHART), "--dry-run", "-n", "x", "-f", str(values)
        )
        assert text in result.stdout.split("NOTES:")[1], values
