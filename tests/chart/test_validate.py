"""Every rendered object is valid: Kubernetes objects against the Kubernetes schemas with
unknown fields rejected (kubernetes-validate --strict), the InferenceService against KServe's
generated models, ServiceMonitor and PrometheusRule against the prometheus-operator models."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kserve.models
import kubernetes.client.models
import pytest
import yaml

from tests.chart.conftest import VALUE_SETS, find, render, render_text, run_tool, schema_problems

KUBERNETES_VERSIONS = ("1.29.0", "1.31.0", "1.33.0")


def test_kubernetes_objects_are_valid_strict(tools, tmp_path: Path) -> None:
    # One kubernetes-validate run per Kubernetes version over every value set's rendering:
    # its start-up dominates the check of one file.
    files = []
    for value_set in VALUE_SETS:
        rendered = tmp_path / f"{Path(value_set).stem}.yaml"
        rendered.write_text(render_text("helm4", value_set))
        files.append(str(rendered))
    for version in KUBERNETES_VERSIONS:
        result = run_tool("kubernetes-validate", "--strict", "-k", version, *files, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        # It only warns on custom resources: those are checked below, and nothing else may be
        # unknown to it.
        unknown = re.findall(r"Couldn't find schema for kind (\w+)", result.stdout + result.stderr)
        assert set(unknown) <= {"InferenceService", "ServiceMonitor", "PrometheusRule"}, unknown
        # Every file was read: each is named in the output (a line per valid object).
        for name in files:
            assert name in result.stdout + result.stderr, (version, name)


# --- InferenceService: walk KServe's generated model classes --------------------------------

PRIMITIVES = {
    "str": str,
    "int": int,
    "bool": bool,
    "float": (int, float),
    "object": object,
    "datetime": str,
    "date": str,
}


def model_class(name: str) -> type | None:
    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    return None


def walk(path: str, value: Any, type_name: str) -> list[str]:
    """Problems of VALUE against the openapi type TYPE_NAME: unknown fields, wrong types."""
    if value is None:
        return []
    # kserve writes list[X] and dict(str, X); the kubernetes client List[X] and Dict[str, X].
    if type_name.startswith(("list[", "List[")):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        inner = type_name[5:-1]
        return [p for i, v in enumerate(value) for p in walk(f"{path}[{i}]", v, inner)]
    if type_name.startswith(("dict(", "Dict[")):
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [p for k, v in value.items() for p in walk(f"{path}.{k}", v, inner)]
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (
            type_name == "int" and isinstance(value, bool)
        )
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    cls = model_class(type_name)
    if cls is None:  # e.g. ResourceQuantity: a string or a number
        return [] if isinstance(value, (str, int, float)) else [f"{path}: bad {type_name}"]
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} object"]
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    problems = []
    for key, v in value.items():
        if key not in by_json:
            problems.append(f"{path}.{key}: unknown field of {type_name}")
        else:
            problems += walk(f"{path}.{key}", v, cls.openapi_types[by_json[key]])
    return problems


def test_the_walk_catches_unknown_fields() -> None:
    bad = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "x"},
        "spec": {
            "predictor": {
                "containers": [
                    {"name": "c", "imagee": "typo", "securityContext": {"runAsNonRoott": True}}
                ],
                "minReplicas": "1",
            }
        },
    }
    problems = walk("", bad, "V1beta1InferenceService")
    assert any("imagee: unknown field" in p for p in problems)
    assert any("minReplicas: expected int" in p for p in problems)
    assert any("securityContext.runAsNonRoott: unknown field" in p for p in problems)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_inference_service_matches_kserve_models(tools, tmp_path: Path, value_set: str) -> None:
    for isvc in find(render("helm4", value_set), "InferenceService"):
        assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
        assert walk("", isvc, "V1beta1InferenceService") == []
        # The pod part of the predictor, as a Pod, against the Kubernetes schema (strict).
        predictor = isvc["spec"]["predictor"]
        pod_fields = set(kubernetes.client.models.V1PodSpec.attribute_map.values())
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "predictor"},
            "spec": {k: v for k, v in predictor.items() if k in pod_fields},
        }
        assert set(predictor) - set(pod["spec"]) <= {
            "minReplicas",
            "maxReplicas",
            "scaleMetric",
            "scaleTarget",
            "labels",
            "annotations",
        }
        pod_file = tmp_path / "predictor-pod.yaml"
        pod_file.write_text(yaml.safe_dump(pod))
        result = run_tool(
            "kubernetes-validate", "--strict", "-k", "1.31.0", str(pod_file), check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


# --- ServiceMonitor and PrometheusRule: the prometheus-operator models -----------------------


def monitoring_problems(objects: list[dict[str, Any]]) -> list[str]:
    return schema_problems("validate_monitoring.py", objects)


def test_monitoring_check_catches_unknown_fields(tools) -> None:
    sm = find(render("helm4"), "ServiceMonitor")[0]
    unknown = json.loads(json.dumps(sm))
    unknown["spec"]["endpoints"][0]["pathh"] = "/metrics"
    wrong_type = json.loads(json.dumps(sm))
    wrong_type["spec"]["endpoints"][0]["interval"] = {"seconds": 30}
    problems = monitoring_problems([unknown, wrong_type])
    assert len(problems) == 2, problems
    assert "pathh: unknown field" in problems[0], problems
    assert "interval" in problems[1], problems


def test_service_monitors_and_rules_match_the_operator_models(tools) -> None:
    objects = []
    for value_set in VALUE_SETS:
        docs = render("helm4", value_set)
        objects += find(docs, "ServiceMonitor") + find(docs, "PrometheusRule")
    assert objects
    assert monitoring_problems(objects) == []


def test_service_monitor_scrapes_the_predictor_metrics_port(tools) -> None:
    for value_set in VALUE_SETS:
        docs = render("helm4", value_set)
        for sm in find(docs, "ServiceMonitor"):
            selector = sm["spec"]["selector"]["matchLabels"]
            services = [
                s
                for s in find(docs, "Service")
                if selector.items() <= s["metadata"]["labels"].items()
            ]
            assert len(services) == 1, (value_set, [s["metadata"]["name"] for s in services])
            port_names = {p["name"] for p in services[0]["spec"]["ports"]}
            for endpoint in sm["spec"]["endpoints"]:
                assert endpoint["port"] in port_names
                assert endpoint["path"] == "/metrics"
