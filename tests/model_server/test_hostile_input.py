"""A corpus of hostile requests, sent to the real server (the shared one: MAX_INSTANCES 2000,
MAX_BODY_BYTES 1 MiB): malformed JSON, wrong content types, bodies over the limit, deep
nesting, numbers beyond float64, NaN and infinities, duplicate keys, odd text, too many and
too few instances, wrong types, and the v2 tensor mistakes.

Each must be refused with a 4xx whose message names the problem (the instance and the feature
where there is one), reach no model, and be in the prediction log with its error; afterwards
a valid request still works. Value checks one feature at a time (a latitude outside
California, a missing or extra feature, a short row, ...) are in test_server_validation.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.server import FEATURES, MAX_INSTANCES, MODEL, ROWS, ServerProcess, wait_for

V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"
JSON = {"content-type": "application/json"}
LIMIT = 1_048_576  # the default MODEL_SERVER_MAX_BODY_BYTES of the shared server
ROW = list(ROWS[0])
OBJECT = dict(zip(FEATURES, ROW, strict=True))
BIG_INT = "1" + "0" * 400  # 10**400 as a JSON integer literal


@dataclass(frozen=True)
class Case:
    path: str
    body: bytes
    status: int
    fragments: tuple[str, ...]  # each must be in the error message
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    chunked: bool = False


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def v1_row(*values: str) -> bytes:
    """A v1 body of one row written by hand (JSON literals Python's json would not write)."""
    return ('{"instances": [[' + ", ".join(values) + "]]}").encode()


def with_first(literal: str) -> tuple[str, ...]:
    return (literal, *(repr(v) for v in ROW[1:]))


def v2_tensor(
    data: object, shape: object = (1, 8), datatype: str = "FP64", **extra: object
) -> bytes:
    tensor = {"name": "input-0", "shape": list(shape), "datatype": datatype, "data": data}  # type: ignore[call-overload]
    return dumps({"inputs": [tensor], **extra})


def v2_raw_tensor(data: str) -> bytes:
    return (
        '{"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP64", "data": '
        + data
        + "}]}"
    ).encode()


def v2_named(values: dict[str, object], datatype: str = "FP64", length: int = 1) -> bytes:
    inputs = [
        {"name": name, "shape": [length], "datatype": datatype, "data": [value] * length}
        for name, value in values.items()
    ]
    return dumps({"inputs": inputs})


NAMED = dict(OBJECT)
# A binary-extension request whose header announces 64 bytes of tensor data that never come.
BINARY_HEADER = dumps(
    {
        "inputs": [
            {
                "name": "x",
                "shape": [1, 8],
                "datatype": "FP64",
                "parameters": {"binary_data_size": 64},
            }
        ]
    }
)
DEEP = 100_000
# name -> case. "instance i, feature 'F'" wherever the problem is in a value.
CORPUS: dict[str, Case] = {
    # -- malformed and truncated JSON
    "v1_truncated": Case(V1, b'{"instances": [[8.3252, 41.0', 400, ("unexpected end of data",)),
    "v1_trailing_garbage": Case(V1, b'{"instances": []} xyz', 400, ("after document",)),
    "v1_empty_body": Case(V1, b"", 400, ("empty document",)),
    "v1_not_json": Case(V1, b"instances=1", 400, ("Unrecognized request format",)),
    "v1_invalid_utf8": Case(V1, b'{"instances": [{"\xff\xfe": 1}]}', 400, ("UTF-8",)),
    "v1_body_is_null": Case(V1, b"null", 400, ('{"instances": [...]}',)),
    "v1_body_is_array": Case(V1, b"[[1, 2]]", 400, ('{"instances": [...]}',)),
    "v1_instances_is_null": Case(
        V1, b'{"instances": null}', 400, ("'instances' must be an array",)
    ),
    "v2_truncated": Case(V2, b'{"inputs": [{"name": "x", "shape": [1', 400, ("malformed JSON",)),
    "v2_empty_body": Case(V2, b"", 422, ("body", "Field required")),
    "v2_body_is_array": Case(V2, b"[1]", 422, ("body", "valid dictionary")),
    # -- content types: the body is read as JSON whatever the Content-Type says (curl -d says
    # a form, tritonclient says nothing: test_server_protocols.py); what is not JSON is a 400
    # that names the declared type
    "v1_text_plain_not_json": Case(
        V1, b"MedInc=8.3", 400, ("'text/plain'", "must be JSON"), {"content-type": "text/plain"}
    ),
    "v1_form": Case(
        V1,
        b"instances=1&x=2",
        400,
        ("'application/x-www-form-urlencoded'", "must be JSON"),
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    "v1_multipart": Case(
        V1,
        b"--b\r\n\r\n--b--",
        400,
        ("'multipart/form-data; boundary=b'", "must be JSON"),
        {"content-type": "multipart/form-data; boundary=b"},
    ),
    "v1_xml": Case(
        V1, b"<instances/>", 400, ("'application/xml'",), {"content-type": "application/xml"}
    ),
    "v1_no_content_type_not_json": Case(
        V1, b"instances=1", 400, ("Unrecognized request format",), {}
    ),
    "v2_text_plain_not_json": Case(
        V2, b"inputs", 400, ("'text/plain'", "must be JSON"), {"content-type": "text/plain"}
    ),
    "v2_form": Case(
        V2,
        b"inputs=1",
        400,
        ("'application/x-www-form-urlencoded'", "must be JSON"),
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    "v2_no_content_type_not_json": Case(V2, b"inputs=1", 400, ("Unrecognized request format",), {}),
    # -- bodies over MODEL_SERVER_MAX_BODY_BYTES, refused before parsing
    "v1_huge_body": Case(V1, b'{"instances": [' + b" " * LIMIT + b"]}", 413, (f"at most {LIMIT}",)),
    "v1_huge_body_chunked": Case(
        V1, b'{"instances": [' + b" " * LIMIT + b"]}", 413, (f"over {LIMIT}",), chunked=True
    ),
    "v2_huge_body": Case(V2, b'{"inputs": [' + b" " * LIMIT + b"]}", 413, (f"at most {LIMIT}",)),
    "v2_huge_body_chunked": Case(
        V2, b'{"inputs": [' + b" " * LIMIT + b"]}", 413, (f"over {LIMIT}",), chunked=True
    ),
    "v1_100k_instances": Case(
        V1,
        dumps({"instances": [[0, 0, 0, 0, 0, 0, 34, -118]] * 100_000}),
        413,
        (f"at most {LIMIT}",),
    ),
    # -- too many, too few instances
    "v1_over_max_instances": Case(
        V1,
        dumps({"instances": [ROW] * (MAX_INSTANCES + 1)}),
        413,
        (f"{MAX_INSTANCES + 1} instances; at most {MAX_INSTANCES}",),
    ),
    "v2_over_max_instances": Case(
        V2,
        v2_tensor(ROW * (MAX_INSTANCES + 1), (MAX_INSTANCES + 1, 8)),
        413,
        (f"{MAX_INSTANCES + 1} instances; at most {MAX_INSTANCES}",),
    ),
    "v2_huge_shape": Case(V2, v2_tensor(ROW, (10**30, 8)), 413, (f"{10**30} instances",)),
    "v1_empty_instances": Case(V1, b'{"instances": []}', 400, ("no instances",)),
    "v2_zero_rows": Case(V2, v2_tensor([], (0, 8)), 400, ("no instances",)),
    "v2_negative_rows": Case(V2, v2_tensor(ROW, (-1, 8)), 400, ("no instances",)),
    # -- deep nesting
    "v1_deep_nesting": Case(
        V1, b'{"instances": ' + b"[" * DEEP + b"]" * DEEP + b"}", 400, ("depth limit exceeded",)
    ),
    "v1_deep_objects": Case(
        V1,
        b'{"instances": [' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"]}",
        400,
        ("depth limit exceeded",),
    ),
    "v2_deep_nesting": Case(
        V2, v2_raw_tensor("[" * DEEP + "]" * DEEP), 400, ("error parsing the body",)
    ),
    "v2_nested_data_too_deep_to_fit": Case(
        V2,
        v2_raw_tensor("[" * 500 + "1" + "]" * 500),
        400,
        ("input 'input-0'", "holds 8 values", "has 1"),
    ),
    # -- numbers beyond float64, NaN and infinities
    "v1_1e400": Case(
        V1,
        v1_row(*with_first("1e400")),
        400,
        ("instance 0, feature 'MedInc'", "not a finite number"),
    ),
    "v1_int_10e400": Case(
        V1,
        v1_row(*with_first(BIG_INT)),
        400,
        ("instance 0, feature 'MedInc'", "too large for a float"),
    ),
    "v1_nan": Case(
        V1, v1_row(*with_first("NaN")), 400, ("instance 0, feature 'MedInc'", "NaN is not a value")
    ),
    "v1_infinity": Case(
        V1,
        v1_row(*with_first("Infinity")),
        400,
        ("instance 0, feature 'MedInc'", "inf is not a finite number"),
    ),
    "v1_minus_infinity": Case(
        V1,
        v1_row(*with_first("-Infinity")),
        400,
        ("instance 0, feature 'MedInc'", "-inf is not a finite number"),
    ),
    "v1_nan_in_object": Case(
        V1,
        b'{"instances": [' + dumps({**OBJECT, "Latitude": float("nan")}) + b"]}",
        400,
        ("instance 0, feature 'Latitude'", "NaN"),
    ),
    "v2_1e400": Case(
        V2,
        v2_raw_tensor("[" + ", ".join(with_first("1e400")) + "]"),
        400,
        ("instance 0, feature 'MedInc'", "not a finite number"),
    ),
    "v2_int_10e400": Case(
        V2,
        v2_raw_tensor("[" + ", ".join(with_first(BIG_INT)) + "]"),
        400,
        ("instance 0, feature 'MedInc'", "too large for a float"),
    ),
    "v2_nan": Case(
        V2,
        v2_raw_tensor("[" + ", ".join(with_first("NaN")) + "]"),
        400,
        ("instance 0, feature 'MedInc'", "NaN is not a value"),
    ),
    "v2_infinity": Case(
        V2,
        v2_raw_tensor("[" + ", ".join(with_first("Infinity")) + "]"),
        400,
        ("instance 0, feature 'MedInc'", "inf is not a finite number"),
    ),
    "v2_minus_infinity": Case(
        V2,
        v2_raw_tensor("[" + ", ".join(with_first("-Infinity")) + "]"),
        400,
        ("instance 0, feature 'MedInc'", "-inf is not a finite number"),
    ),
    "v2_fp32_beyond_float32": Case(
        V2,
        v2_tensor([1e300, *ROW[1:]], datatype="FP32"),
        400,
        ("instance 0, feature 'MedInc'", "above valid_max"),
    ),
    # -- duplicate keys (the parser would keep the last)
    "v1_duplicate_feature": Case(
        V1,
        b'{"instances": [' + dumps(OBJECT)[:-1] + b', "MedInc": 3.0}]}',
        400,
        ("instance 0, feature 'MedInc'", "more than once"),
    ),
    "v1_duplicate_in_second_instance": Case(
        V1,
        b'{"instances": [' + dumps(ROW) + b", " + dumps(OBJECT)[:-1] + b', "Latitude": 34.0}]}',
        400,
        ("instance 1, feature 'Latitude'", "more than once"),
    ),
    "v1_duplicate_instances_key": Case(
        V1,
        b'{"instances": [], "instances": [' + dumps(ROW) + b"]}",
        400,
        ("key 'instances'", "more than once"),
    ),
    # -- text: unicode, NUL, control characters and lone surrogates in names
    "v1_unicode_feature": Case(
        V1,
        dumps({"instances": [{**OBJECT, "Médïan☃": 1.0}]}),
        400,
        ("instance 0, feature 'Médïan☃'", "not a feature"),
    ),
    "v1_nul_in_feature": Case(
        V1,
        dumps({"instances": [{**OBJECT, "Med\u0000Inc": 1.0}]}),
        400,
        ("instance 0, feature 'Med\\u0000Inc'", "not a feature"),
    ),
    "v1_control_in_feature": Case(
        V1,
        dumps({"instances": [{**OBJECT, "a\nb\u001b": 1.0}]}),
        400,
        ("feature 'a\nb\\u001b'", "not a feature"),
    ),
    "v1_lone_surrogate_feature": Case(
        V1, b'{"instances": [{"\\ud800": 1}]}', 400, ("feature '\\ud800'", "not a feature")
    ),
    "v1_nul_in_string_value": Case(
        V1,
        dumps({"instances": [{**OBJECT, "HouseAge": "4\u00001"}]}),
        400,
        ("instance 0, feature 'HouseAge'", "string"),
    ),
    "v2_unicode_input_name": Case(
        V2, v2_named({**NAMED, "Médïan☃": 1.0}), 400, ("feature 'Médïan☃'", "not a feature")
    ),
    "v2_nul_in_input_name": Case(
        V2,
        v2_named({**NAMED, "Med\u0000Inc": 1.0}),
        400,
        ("feature 'Med\\u0000Inc'", "not a feature"),
    ),
    "v2_lone_surrogate_name": Case(
        V2,
        b'{"inputs": [{"name": "\\ud800", "shape": [1], "datatype": "FP64", "data": [1]}]}',
        400,
        ("lone surrogate", "inputs[0].name"),
    ),
    "v2_lone_surrogate_id": Case(
        V2, v2_tensor(ROW)[:-1] + b', "id": "\\udfff"}', 400, ("lone surrogate", "id")
    ),
    "v2_lone_surrogate_datatype": Case(
        V2,
        b'{"inputs": [{"name": "x", "shape": [1, 8], "datatype": "\\ud800", "data": [1]}]}',
        400,
        ("lone surrogate", "inputs[0].datatype"),
    ),
    "v2_lone_surrogate_request_key": Case(
        V2,
        v2_tensor(ROW, parameters={"request_key": "\ud800"}),
        400,
        ("lone surrogate", "parameters.request_key"),
    ),
    # -- booleans, strings, null where numbers go
    "v1_boolean": Case(
        V1,
        dumps({"instances": [[*ROW[:3], False, *ROW[4:]]]}),
        400,
        ("instance 0, feature 'AveBedrms'", "false is a boolean"),
    ),
    "v1_string": Case(
        V1,
        dumps({"instances": [ROW, {**OBJECT, "AveOccup": "2.5"}]}),
        400,
        ("instance 1, feature 'AveOccup'", "'2.5' is a string"),
    ),
    "v1_null": Case(
        V1,
        dumps({"instances": [[*ROW[:7], None]]}),
        400,
        ("instance 0, feature 'Longitude'", "null is not a number"),
    ),
    "v1_nested_array_value": Case(
        V1,
        dumps({"instances": [[[1.0], *ROW[1:]]]}),
        400,
        ("instance 0, feature 'MedInc'", "an array is not a number"),
    ),
    "v1_object_value": Case(
        V1,
        dumps({"instances": [{**OBJECT, "Population": {"v": 1}}]}),
        400,
        ("instance 0, feature 'Population'", "an object is not a number"),
    ),
    "v1_instance_is_string": Case(
        V1, dumps({"instances": [ROW, "row"]}), 400, ("instance 1", "got a string")
    ),
    "v1_instance_is_null": Case(V1, dumps({"instances": [None]}), 400, ("instance 0", "got null")),
    "v1_instance_is_boolean": Case(
        V1, dumps({"instances": [True]}), 400, ("instance 0", "got a boolean")
    ),
    "v2_boolean": Case(
        V2,
        v2_tensor([*ROW[:2], True, *ROW[3:]]),
        400,
        ("instance 0, feature 'AveRooms'", "true is a boolean"),
    ),
    "v2_string": Case(
        V2,
        v2_tensor([*ROW[:4], "322", *ROW[5:]]),
        400,
        ("instance 0, feature 'Population'", "'322' is a string"),
    ),
    "v2_null": Case(
        V2,
        v2_tensor([None, *ROW[1:]]),
        400,
        ("instance 0, feature 'MedInc'", "null is not a number"),
    ),
    "v2_named_string": Case(
        V2,
        v2_named({**NAMED, "Latitude": "north"}),
        400,
        ("instance 0, feature 'Latitude'", "string"),
    ),
    # -- negative counts (the profile's valid domain starts at 0; see test_zero_counts)
    "v1_negative_population": Case(
        V1,
        dumps({"instances": [{**OBJECT, "Population": -5}]}),
        400,
        ("instance 0, feature 'Population'", "-5 is below valid_min 0"),
    ),
    "v1_negative_aveoccup": Case(
        V1,
        dumps({"instances": [ROW, [*ROW[:5], -0.5, *ROW[6:]]]}),
        400,
        ("instance 1, feature 'AveOccup'", "below valid_min"),
    ),
    "v2_negative_rooms": Case(
        V2,
        v2_named({**NAMED, "AveRooms": -1.0}),
        400,
        ("instance 0, feature 'AveRooms'", "below valid_min"),
    ),
    # -- v2: shape, datatype, length, names
    "v2_three_dimensions": Case(
        V2,
        v2_tensor(ROW, (1, 8, 1)),
        400,
        ("feature 'MedInc'", "input is missing", "feature 'input-0'"),
    ),
    "v2_empty_shape": Case(V2, v2_tensor(ROW, ()), 400, ("feature 'MedInc'", "input is missing")),
    "v2_fractional_shape": Case(V2, v2_tensor(ROW, (1.5, 8)), 422, ("shape.0", "fractional part")),
    "v2_wrong_columns": Case(V2, v2_tensor(ROW + ROW, (1, 16)), 400, ("input 'input-0'", "[N, 8]")),
    "v2_data_longer_than_shape": Case(
        V2, v2_tensor(ROW + ROW), 400, ("input 'input-0'", "holds 8 values", "has 16")
    ),
    "v2_data_shorter_than_shape": Case(
        V2, v2_tensor(ROW, (2, 8)), 400, ("input 'input-0'", "holds 16 values", "has 8")
    ),
    "v2_data_not_array": Case(V2, v2_tensor({"v": ROW}), 422, ("inputs.0.data", "valid list")),
    "v2_datatype_int32": Case(
        V2,
        v2_tensor([int(v) for v in ROW], datatype="INT32"),
        400,
        ("input 'input-0'", "datatype INT32 is not supported"),
    ),
    "v2_datatype_bytes": Case(
        V2,
        v2_tensor([str(v) for v in ROW], datatype="BYTES"),
        400,
        ("input 'input-0'", "datatype BYTES is not supported"),
    ),
    "v2_named_bytes": Case(
        V2,
        v2_named({n: str(v) for n, v in NAMED.items()}, datatype="BYTES"),
        400,
        ("input 'MedInc'", "datatype BYTES is not supported"),
    ),
    "v2_datatype_fp16": Case(V2, v2_tensor(ROW, datatype="FP16"), 400, ("FP16", "input-0")),
    "v2_datatype_unknown": Case(
        V2, v2_tensor(ROW, datatype="DECIMAL"), 400, ("datatype DECIMAL is not supported",)
    ),
    "v2_named_missing": Case(
        V2,
        v2_named({k: v for k, v in NAMED.items() if k != "AveOccup"}),
        400,
        ("feature 'AveOccup'", "input is missing"),
    ),
    "v2_named_extra": Case(
        V2,
        v2_named({**NAMED, "OceanProximity": 1.0}),
        400,
        ("feature 'OceanProximity'", "not a feature"),
    ),
    "v2_named_twice": Case(
        V2,
        dumps(
            {
                "inputs": [
                    *json.loads(v2_named(NAMED))["inputs"],
                    {"name": "MedInc", "shape": [1], "datatype": "FP64", "data": [1.0]},
                ]
            }
        ),
        400,
        ("appears twice",),
    ),
    "v2_named_different_lengths": Case(
        V2,
        dumps(
            {
                "inputs": [
                    {**t, "shape": [2], "data": t["data"] * 2} if t["name"] == "HouseAge" else t
                    for t in json.loads(v2_named(NAMED))["inputs"]
                ]
            }
        ),
        400,
        ("different lengths [1, 2]",),
    ),
    "v2_named_matrix": Case(
        V2,
        dumps(
            {
                "inputs": [
                    {**t, "shape": [1, 2], "data": t["data"] * 2} if t["name"] == "MedInc" else t
                    for t in json.loads(v2_named(NAMED))["inputs"]
                ]
            }
        ),
        400,
        ("input 'MedInc'", "expected [N]"),
    ),
    "v2_unknown_output": Case(
        V2,
        v2_tensor(ROW, outputs=[{"name": "explanation"}]),
        400,
        ("unknown output 'explanation'",),
    ),
    "v2_id_not_string": Case(V2, v2_tensor(ROW, id=5), 422, ("id", "valid string")),
    # -- v2 binary tensor extension, lying about its sizes
    "v2_binary_header_not_a_number": Case(
        V2,
        v2_tensor(ROW),
        400,
        ("invalid literal for int()",),
        {"inference-header-content-length": "many"},
    ),
    "v2_binary_header_past_the_body": Case(
        V2,
        b'{"inputs": []}',
        400,
        ("'inputs' is empty",),
        {"inference-header-content-length": "10000"},
    ),
    "v2_binary_data_missing": Case(
        V2,
        BINARY_HEADER,
        400,
        ("malformed request", "reshape"),
        {"inference-header-content-length": str(len(BINARY_HEADER))},
    ),
    # -- wrong model name
    "v1_unknown_model": Case(
        f"/v1/models/{MODEL}-x:predict", dumps({"instances": [ROW]}), 404, (f"{MODEL}-x",)
    ),
    "v2_unknown_model": Case(f"/v2/models/{MODEL}-x/infer", v2_tensor(ROW), 404, (f"{MODEL}-x",)),
}


@pytest.fixture(scope="module")
def client(served: ServerProcess) -> Iterator[httpx.Client]:
    with served.client(timeout=60.0) as http:
        yield http


def predictions_made(server: ServerProcess) -> float:
    """Instances that reached a model so far (the prediction-value histogram's count)."""
    text = server.get("/metrics").text
    found = re.findall(r"^model_server_prediction_value_count\{[^}]*\} (\S+)$", text, re.M)
    return sum(float(v) for v in found)


@pytest.fixture(scope="module")
def before(served: ServerProcess) -> float:
    """Predictions made before the corpus (taken once, before its first request)."""
    return predictions_made(served)


def request_id(name: str) -> str:
    return f"hostile-{name}"


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_request_is_refused(client: httpx.Client, before: float, name: str) -> None:
    case = CORPUS[name]
    body = case.body
    content: bytes | Iterator[bytes] = body
    if case.chunked:  # no Content-Length: the server counts the bytes as they come
        content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    response = client.post(
        case.path, content=content, headers={**case.headers, "x-request-id": request_id(name)}
    )
    assert response.status_code == case.status, response.text[:2000]
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    for fragment in case.fragments:
        assert fragment in error, error[:2000]


def test_none_reached_the_model_and_the_log_has_them(
    served: ServerProcess, client: httpx.Client, before: float
) -> None:
    """After the corpus: nothing was predicted, a valid request works, and every refused
    request is in the prediction log with its status and error (the writer commits in
    batches: wait for it)."""
    assert predictions_made(served) == before
    response = client.post(V1, json={"instances": [ROW]})
    assert response.status_code == 200, response.text
    wanted = {request_id(name): case for name, case in CORPUS.items()}
    logged: dict[str, dict[str, object]] = {}

    def all_logged() -> bool:
        for row in client.get("/logs/10000").json():
            if row["request_id"] in wanted:
                logged[row["request_id"]] = row
        return len(logged) == len(wanted)

    wait_for(all_logged, 30.0, "the refused requests in the prediction log", interval=0.5)
    for rid, case in wanted.items():
        row = logged[rid]
        assert row["status"] == case.status, (rid, row)
        assert row["inputs"] is None and row["output"] is None, (rid, row)
        for fragment in case.fragments:
            assert fragment in str(row["error"]), (rid, row["error"])


def test_zero_counts_follow_the_contract(client: httpx.Client) -> None:
    """Zero rooms, occupants or population is impossible (housing.contract's physical bounds),
    whatever the profile's range allows: a 400 naming the feature, and the OpenAPI document
    says so (exclusiveMinimum 0). Zero bedrooms is possible: the profile's range decides."""
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/models/{model_name}:predict"]["post"]["requestBody"]
    by_name = body["content"]["application/json"]["schema"]["properties"]["instances"]["items"]
    domain = by_name["anyOf"][1]["properties"]
    for feature in ("AveOccup", "AveRooms", "Population"):
        assert domain[feature].get("exclusiveMinimum", domain[feature].get("minimum")) >= 0
        response = client.post(V1, json={"instances": [{**OBJECT, feature: 0}]})
        assert response.status_code == 400, (feature, response.text)
        assert f"instance 0, feature '{feature}'" in response.json()["error"]
    low = domain["AveBedrms"]["minimum"]
    response = client.post(V1, json={"instances": [{**OBJECT, "AveBedrms": 0}]})
    assert response.status_code == (200 if low <= 0 else 400), response.text


# -- the operational API: values no JSON number should carry (each was a 500 before)

OPS_CASES = {
    # 10**400 was stored in the policy; rendering it failed from then on, /retrain/status too.
    "config_int_beyond_64_bits": ("/retrain/config", '{"min_feedback": ' + BIG_INT + "}", 422),
    # Infinity could not be stored (a 500).
    "config_infinity": ("/retrain/config", '{"min_interval_hours": Infinity}', 422),
    "config_1e400": ("/retrain/config", '{"max_age_hours": 1e400}', 422),
    "config_nan": ("/retrain/config", '{"r2_floor": NaN}', 422),
    "config_string_for_number": ("/retrain/config", '{"r2_floor": "0.6"}', 422),
    "config_integral_float_is_an_integer": ("/retrain/config", '{"min_feedback": 200.0}', 200),
    "config_lone_surrogate_key": ("/retrain/config", '{"\\ud800": 1}', 422),
    "feedback_nan": ("/feedback", '{"prediction_id": "x", "actual": NaN}', 422),
    "feedback_huge_int": ("/feedback", f'{{"prediction_id": "x", "actual": {BIG_INT}}}', 422),
    "feedback_lone_surrogate_id": ("/feedback", '{"prediction_id": "\\ud800", "actual": 1}', 422),
    "trigger_string_for_boolean": ("/retrain/trigger", '{"force": "yes"}', 422),
}


@pytest.mark.parametrize("name", list(OPS_CASES))
def test_operations_refuse_odd_numbers(client: httpx.Client, name: str) -> None:
    path, body, status = OPS_CASES[name]
    before = client.get("/retrain/status")
    assert before.status_code == 200, before.text
    response = client.post(path, content=body.encode(), headers=JSON)
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.json()["error"]
    after = client.get("/retrain/status")
    assert after.status_code == 200, after.text
    if status >= 400:
        assert after.json()["thresholds"] == before.json()["thresholds"]
    elif path == "/retrain/config":  # leave the shared server's policy as it was
        reset = dict.fromkeys(json.loads(body))
        assert client.post(path, json=reset).status_code == 200


# -- routes: only those served, every answer in the one error shape


def test_the_model_cannot_be_unloaded_by_a_request(client: httpx.Client) -> None:
    """KServe's model repository extension would remove the model from the server for good."""
    for action in ("unload", "load"):
        response = client.post(f"/v2/repository/models/{MODEL}/{action}")
        assert response.status_code == 404, response.text
        assert response.json() == {"error": "Not Found"}
    assert client.post(V1, json={"instances": [ROW]}).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        f"/v2/models/{MODEL}/versions/1",
        f"/v2/models/{MODEL}/versions/1/ready",
        f"/v1/models/{MODEL}:explain",
        "/no/such/route",
    ],
)
def test_routes_not_served_are_404(client: httpx.Client, path: str) -> None:
    """Versioned v2 routes (the served version is the alias's) and the explainer were 501s."""
    method = client.post if path.endswith(":explain") else client.get
    response = method(path)
    assert response.status_code in (404, 405), response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


def test_a_model_version_query_parameter_is_not_a_501(client: httpx.Client) -> None:
    """KServe's v2 handlers took `?model_version=` and answered 501 to it."""
    for path in (f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready"):
        response = client.get(path, params={"model_version": "7"})
        assert response.status_code == 200, response.text
    response = client.post(V2, params={"model_version": "7"}, content=v2_tensor(ROW), headers=JSON)
    assert response.status_code == 200, response.text


def test_a_wrong_method_names_the_right_one(client: httpx.Client) -> None:
    """`/v1/models/{model_name}` (GET) also matches `NAME:predict`: it was told Allow: GET."""
    response = client.request("OPTIONS", V1)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {"error": "Method Not Allowed (allowed: POST)"}


def test_the_openapi_document_states_every_error(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    operations = {
        (method, path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    for (method, path), operation in operations.items():
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and path != "/health":  # its 503 is a Health
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
        if method == "post":
            assert {"400", "413"} <= set(operation["responses"]), path
    for path in (V1.replace(MODEL, "{model_name}"), V2.replace(MODEL, "{model_name}")):
        responses = operations[("post", path)]["responses"]
        assert {"200", "400", "404", "413", "422", "503"} <= set(responses), path
        [parameter] = operations[("post", path)]["parameters"]
        assert parameter["schema"]["enum"] == [MODEL]
    assert "text/plain" in operations[("get", "/metrics")]["responses"]["200"]["content"]
    assert not [p for p in document["paths"] if "/versions/" in p or "repository" in p]
