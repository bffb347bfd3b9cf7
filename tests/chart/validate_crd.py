"""Validate objects against a CRD's openAPIV3Schema, unknown fields refused.

Run with the tools venv's Python (.tools/py has jsonschema, through kubernetes-validate):
`python validate_crd.py CRD.yaml VERSION` reads a JSON list of objects on stdin and prints a
JSON list of problems. CEL rules (x-kubernetes-validations) are left to the API server.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import jsonschema
import yaml


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as the API server refuses them."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items() if k != "x-kubernetes-validations"}
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def main() -> None:
    crd_path, version = sys.argv[1], sys.argv[2]
    with open(crd_path, encoding="utf-8") as handle:
        crd = yaml.safe_load(handle)
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema = strict(served["schema"]["openAPIV3Schema"])
    # metadata is the API server's own ObjectMeta, not described by the CRD
    schema["properties"]["metadata"] = {"type": "object"}
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"{obj['metadata'].get('name')}: {'.'.join(map(str, e.path))}: {e.message}"
        for obj in json.load(sys.stdin)
        for e in validator.iter_errors(obj)
    ]
    print(json.dumps(problems))


if __name__ == "__main__":
    main()
