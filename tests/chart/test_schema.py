"""values.schema.json against values.yaml: the same keys, the same types, both ways.

The schema is written by hand because it says more than values.yaml can (patterns, enums,
ranges, the cross-value rules under allOf); this test keeps the two from drifting apart:
every value of values.yaml has a schema property whose type admits the value, and every
schema property is a value of values.yaml or, if optional, shown commented out there
(`# key: example`, as cert-manager's chart does).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
COMMENTED_KEYS = set(re.findall(r"(?m)^\s*#\s*([A-Za-z0-9_-]+):", VALUES_TEXT))


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    assert ref.startswith("#/definitions/"), ref
    return resolve(SCHEMA["definitions"][ref.removeprefix("#/definitions/")])


def branches(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The node and its oneOf/anyOf alternatives, resolved."""
    node = resolve(node)
    found = [node]
    for key in ("oneOf", "anyOf"):
        for branch in node.get(key, []):
            found += branches(branch)
    return found


def types(node: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for branch in branches(node):
        kind = branch.get("type")
        found |= {kind} if isinstance(kind, str) else set(kind or ())
        if "const" in branch or "enum" in branch:
            values = [branch["const"]] if "const" in branch else branch["enum"]
            found |= {json_type(v) for v in values}
    return found


def properties(node: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for branch in branches(node):
        found |= branch.get("properties", {})
    return found


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def walk(value: Any, node: dict[str, Any], path: str, problems: list[str]) -> None:
    allowed = types(node)
    kind = json_type(value)
    if not allowed:
        problems.append(f"{path}: the schema gives no type")
    elif kind not in allowed and not (kind == "integer" and "number" in allowed):
        problems.append(f"{path}: values.yaml has {kind} {value!r}, the schema allows {allowed}")
    props = properties(node)
    if not isinstance(value, dict) or not props:
        return  # a leaf, or a free map (labels, annotations, resources' passthrough)
    for key, child in value.items():
        if key not in props:
            problems.append(f"{path}.{key}: in values.yaml, not in the schema")
        else:
            walk(child, props[key], f"{path}.{key}", problems)
    for key in props.keys() - value.keys():
        if key not in COMMENTED_KEYS:
            problems.append(
                f"{path}.{key}: in the schema, neither a value nor a commented-out example"
            )


def test_values_yaml_and_the_schema_have_the_same_keys_and_types() -> None:
    problems: list[str] = []
    walk(VALUES, SCHEMA, "", problems)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"extraKey": 1}, ".extraKey: in values.yaml, not in the schema"),
        ({"predictor": {"replicas": "two"}}, ".predictor.replicas: values.yaml has string"),
    ],
)
def test_the_walk_finds_a_key_or_type_the_schema_lacks(
    values: dict[str, Any], problem: str
) -> None:
    problems: list[str] = []
    merged = {**VALUES, **values}
    if "predictor" in values:
        merged["predictor"] = {**VALUES["predictor"], **values["predictor"]}
    walk(merged, SCHEMA, "", problems)
    assert any(p.startswith(problem) for p in problems), problems


def test_the_walk_finds_a_schema_key_values_yaml_lacks() -> None:
    problems: list[str] = []
    trimmed = {k: v for k, v in VALUES.items() if k != "grafana"}
    walk(trimmed, SCHEMA, "", problems)
    assert ".grafana: in the schema, neither a value nor a commented-out example" in problems
