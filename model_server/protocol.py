"""The two wire formats: KServe v1 and the Open Inference Protocol v2, in and out.

Requests become one float64 matrix in the model's signature order, checked against the served
version's contract; results become each protocol's response, naming the model version and
giving every instance its prediction id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import orjson
from kserve import InferOutput, InferRequest, InferResponse

from model_server.errors import (
    BadRequestError,
    InvalidInstancesError,
    PayloadTooLargeError,
    Problem,
)
from model_server.ids import new_request_id
from model_server.validation import FeatureSchema, describe_type, to_matrix

Protocol = Literal["v1", "v2"]

# v2 output tensors: the predicted value and the id to send feedback for.
PREDICT_OUTPUT = "predict"
ID_OUTPUT = "prediction_id"
OUTPUTS = (PREDICT_OUTPUT, ID_OUTPUT)
# Accepted for the features (the server computes in float64 whatever the signature says).
V2_DATATYPES = frozenset({"FP32", "FP64"})
# Signature types as v2 datatypes, for the model metadata.
V2_DATATYPE = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32"}
_V1_INFER = re.compile(r"^/v1/models/[^/]+:predict$")
_V2_INFER = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/infer$")


def protocol_of(path: str) -> Protocol | None:
    """Which inference endpoint a request path is, if any."""
    if _V1_INFER.match(path):
        return "v1"
    if _V2_INFER.match(path):
        return "v2"
    return None


def _check_count(count: int, max_instances: int) -> None:
    if count < 1:
        raise BadRequestError("no instances: send at least one")
    if count > max_instances:
        raise PayloadTooLargeError(f"{count} instances; at most {max_instances} per request")


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")


# Where a JSON object key ends (`"name" :`); in string values too, so never fewer than the keys.
_KEY_END = re.compile(rb'"\s*:')


def content_type_hint(declared: str | None) -> str:
    """For a message about a body that is not JSON: what the request said it was, if not."""
    media = (declared or "").split(";", 1)[0].strip().lower()
    if not media or media == "application/json" or media.endswith("+json"):
        return ""
    return f" (Content-Type {declared!r}; the body must be JSON)"


def v1_json(body: bytes, content_type: str | None) -> Any:
    """A v1 body's JSON. The fast parser refuses NaN, Infinity and numbers beyond float64
    where it meets them; read as v2 bodies are (Python's parser), the checks then name their
    instance and feature. BadRequestError if it is not JSON even so."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        pass
    raise BadRequestError(f"Unrecognized request format{content_type_hint(content_type)}: {error}")


def v1_duplicate_keys(body: bytes, decoded: object) -> list[Problem]:
    """Keys that appear twice in an object of a v1 body (the parser kept the last one):
    `decoded` is what the fast parser made of `body`. Cheap unless the body has more key-like
    sequences than `decoded` has keys; then the body is parsed again, key by key."""
    if not isinstance(decoded, dict):
        return []
    instances = decoded.get("instances")
    keys = len(decoded)
    if type(instances) is list:
        keys += sum(len(i) for i in instances if type(i) is dict)
    if len(_KEY_END.findall(body)) <= keys:
        return []
    repeated: list[tuple[dict[str, Any], list[str]]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            names = [k for k, _ in pairs]
            repeated.append((obj, sorted({k for k in names if names.count(k) > 1})))
        return obj

    try:
        tree = json.loads(body, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):  # the fast parser accepted it: not ours to judge
        return []
    found = {id(obj): names for obj, names in repeated}
    problems = [
        Problem(f"key '{k}' appears more than once in the request object")
        for k in found.pop(id(tree), [])
    ]
    rows = tree.get("instances") if isinstance(tree, dict) else None
    for i, instance in enumerate(rows if type(rows) is list else []):
        problems += [
            Problem("appears more than once in the object", i, k)
            for k in found.pop(id(instance), [])
        ]
    for names in found.values():
        problems += [Problem(f"key '{k}' appears more than once in an object") for k in names]
    return problems


def v1_features(body: object, schema: FeatureSchema, max_instances: int) -> np.ndarray:
    """`{"instances": [...]}`: each an array in signature order or an object by feature name."""
    if not isinstance(body, dict) or "instances" not in body:
        raise BadRequestError('expected a JSON object {"instances": [...]}')
    instances = body["instances"]
    if not isinstance(instances, list):
        raise BadRequestError(f"'instances' must be an array, got {_json_type(instances)}")
    _check_count(len(instances), max_instances)

    names, width = schema.names, schema.width
    known = frozenset(names)
    rows: list[list[Any]] = []
    problems: list[Problem] = []
    for i, instance in enumerate(instances):
        if type(instance) is list:
            if len(instance) != width:
                problems.append(
                    Problem(
                        f"expected {width} values in signature order ({', '.join(names)}), "
                        f"got {len(instance)}",
                        i,
                    )
                )
            rows.append(instance)
        elif type(instance) is dict:
            if instance.keys() != known:
                problems += [Problem("missing", i, n) for n in names if n not in instance]
                problems += [
                    Problem("not a feature of this model", i, str(k))
                    for k in instance
                    if k not in known
                ]
                continue
            rows.append([instance[n] for n in names])
        else:
            problems.append(
                Problem(
                    f"expected an array of {width} numbers or an object keyed by feature name, "
                    f"got {_json_type(instance)}",
                    i,
                )
            )
    if problems:
        raise InvalidInstancesError(problems)
    x = to_matrix(rows, width)
    if x is None:
        raise InvalidInstancesError(
            [
                Problem(message, i, names[j])
                for i, row in enumerate(rows)
                for j, value in enumerate(row)
                if (message := describe_type(value))
            ]
        )
    schema.check(x)
    return x


def _flatten(data: list[Any]) -> list[Any]:
    """v2 tensor data is row-major, flat or nested."""
    if not any(type(v) is list for v in data):
        return data

    def walk(items: list[Any]) -> Iterator[Any]:
        for item in items:
            if type(item) is list:
                yield from walk(item)
            else:
                yield item

    return list(walk(data))


def _tensor_values(name: str, datatype: str, data: object, count: int) -> list[Any]:
    if datatype not in V2_DATATYPES:
        raise BadRequestError(
            f"input '{name}': datatype {datatype} is not supported; send FP32 or FP64"
        )
    if not isinstance(data, list):
        raise BadRequestError(f"input '{name}': 'data' must be an array")
    values = _flatten(data)
    if len(values) != count:
        raise BadRequestError(
            f"input '{name}': its shape holds {count} values, 'data' has {len(values)}"
        )
    return values


_SURROGATE = re.compile("[\ud800-\udfff]")


def _texts(where: str, value: object) -> Iterator[tuple[str, object]]:
    yield where, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{where} key", key
            yield f"{where}.{key}", item


def v2_invalid_text(request: InferRequest) -> list[str]:
    """The request's text fields that hold a lone surrogate (`"\\ud800"`: JSON that Python's
    parser takes, but no Unicode text; it could not be answered, logged or hashed)."""
    fields = [*_texts("id", request.id), *_texts("parameters", request.parameters)]
    for i, tensor in enumerate(request.inputs or ()):
        fields += [(f"inputs[{i}].name", tensor.name), (f"inputs[{i}].datatype", tensor.datatype)]
        fields += _texts(f"inputs[{i}].parameters", tensor.parameters)
    for i, output in enumerate(request.request_outputs or ()):
        fields += [(f"outputs[{i}].name", output.name)]
        fields += _texts(f"outputs[{i}].parameters", output.parameters)
    return [
        where
        for where, text in fields
        if isinstance(text, str) and not text.isascii() and _SURROGATE.search(text)
    ]


def v2_features(request: InferRequest, schema: FeatureSchema, max_instances: int) -> np.ndarray:
    """One FP32/FP64 tensor [N, width], or one [N] tensor per feature, named as in the
    signature."""
    for requested in request.request_outputs or ():
        if requested.name not in OUTPUTS:
            raise BadRequestError(
                f"unknown output '{requested.name}'; outputs are {', '.join(OUTPUTS)}"
            )
    inputs = request.inputs
    if not inputs:
        raise BadRequestError("'inputs' is empty")
    names, width = schema.names, schema.width
    if len(inputs) == 1 and len(inputs[0].shape) == 2:
        tensor = inputs[0]
        count, columns = tensor.shape
        if columns != width:
            raise BadRequestError(
                f"input '{tensor.name}': shape {tensor.shape}; expected [N, {width}] with columns "
                f"{', '.join(names)}"
            )
        _check_count(count, max_instances)
        values = _tensor_values(tensor.name, tensor.datatype, tensor.data, count * width)
        x = to_matrix([values], count * width)
        if x is None:
            raise InvalidInstancesError(
                [
                    Problem(message, k // width, names[k % width])
                    for k, value in enumerate(values)
                    if (message := describe_type(value))
                ]
            )
        x = x.reshape(count, width)
    else:
        x = _named_columns(request, schema, max_instances)
    schema.check(x)
    return x


def _named_columns(request: InferRequest, schema: FeatureSchema, max_instances: int) -> np.ndarray:
    names = schema.names
    by_name = {t.name: t for t in request.inputs}
    problems = [Problem("input is missing", None, n) for n in names if n not in by_name]
    problems += [Problem("not a feature of this model", None, n) for n in by_name if n not in names]
    if len(by_name) != len(request.inputs):
        problems.append(Problem("an input name appears twice"))
    if problems:
        raise InvalidInstancesError(problems)
    counts = set()
    for name in names:
        shape = by_name[name].shape
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise BadRequestError(f"input '{name}': shape {shape}; expected [N]")
        counts.add(shape[0])
    if len(counts) != 1:
        raise BadRequestError(f"inputs have different lengths {sorted(counts)}; expected one N")
    count = counts.pop()
    _check_count(count, max_instances)
    columns = [_tensor_values(n, by_name[n].datatype, by_name[n].data, count) for n in names]
    x = to_matrix(columns, count)
    if x is None:
        raise InvalidInstancesError(
            [
                Problem(message, i, name)
                for name, column in zip(names, columns, strict=True)
                for i, value in enumerate(column)
                if (message := describe_type(value))
            ]
        )
    return np.ascontiguousarray(x.T)


def v1_response(
    model_name: str, version: str, predictions: np.ndarray, ids: list[str]
) -> dict[str, Any]:
    return {
        "predictions": predictions.tolist(),
        "prediction_ids": ids,
        "model_name": model_name,
        "model_version": version,
    }


def v2_response(
    request: InferRequest,
    model_name: str,
    version: str,
    predictions: np.ndarray,
    ids: list[str],
) -> InferResponse:
    count = len(ids)
    outputs = [
        InferOutput(PREDICT_OUTPUT, [count], "FP64", data=predictions.astype(np.float64)),
        InferOutput(ID_OUTPUT, [count], "BYTES", data=np.array(ids, dtype=np.object_)),
    ]
    return InferResponse(
        response_id=request.id or new_request_id(),
        model_name=model_name,
        model_version=version,
        infer_outputs=outputs,
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
    )
