"""Validate ServiceMonitor and PrometheusRule objects against the prometheus-operator models.

Run with the tools venv's Python (.tools/py, which has cloudcoil-models-prometheus-operator):
reads a JSON list of objects on stdin, prints a JSON list of problems. pydantic ignores unknown
keys, so each object is dumped back and compared with the input: a key that does not survive
the round trip is unknown to the CRD's schema.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cloudcoil.models.prometheus_operator import v1


def diff(path: str, given: Any, dumped: Any) -> list[str]:
    if isinstance(given, dict):
        if not isinstance(dumped, dict):
            return [f"{path}: expected an object"]
        problems = []
        for key, value in given.items():
            if key not in dumped:
                problems.append(f"{path}.{key}: unknown field")
            else:
                problems += diff(f"{path}.{key}", value, dumped[key])
        return problems
    if isinstance(given, list):
        if not isinstance(dumped, list) or len(dumped) != len(given):
            return [f"{path}: list changed in the round trip"]
        return [
            p
            for i, (g, d) in enumerate(zip(given, dumped, strict=True))
            for p in diff(f"{path}[{i}]", g, d)
        ]
    if given != dumped:
        return [f"{path}: {given!r} became {dumped!r}"]
    return []


def main() -> None:
    models = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule}
    problems: list[str] = []
    for obj in json.load(sys.stdin):
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            model = models[obj["kind"]].model_validate(obj)
        except Exception as exc:  # a pydantic ValidationError: wrong type, missing field
            problems.append(f"{name}: {exc}")
            continue
        dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
        problems += [f"{name}: {p}" for p in diff("", obj, dumped)]
    json.dump(problems, sys.stdout)


if __name__ == "__main__":
    main()
