"""Bad values, one feature at a time, sent to the real server: a 4xx naming the instance and the
feature, never a 500, and nothing reaches the model. Request bodies live in
tests/testdata/model_server. The systematic corpus of hostile requests (malformed JSON, content
types, sizes, nesting, NaN and huge numbers, duplicate keys, odd text, instance counts, v2
tensor mistakes, wrong model name) is test_hostile_input.py.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.server import MODEL, TESTDATA, ServerProcess

V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"

# file -> (status, fragments the message must contain)
CASES: dict[str, tuple[int, list[str]]] = {
    "v1_latitude_outside_california.json": (400, ["instance 1", "feature 'Latitude'", "47.6"]),
    "v1_longitude_in_the_ocean.json": (400, ["instance 2", "feature 'Longitude'", "-140.5"]),
    "v1_missing_feature.json": (400, ["instance 0", "feature 'AveOccup'", "missing"]),
    "v1_extra_feature.json": (400, ["instance 1", "feature 'OceanProximity'", "not a feature"]),
    "v1_string_value.json": (400, ["instance 1", "feature 'HouseAge'", "string"]),
    "v1_boolean_value.json": (400, ["instance 0", "feature 'Population'", "boolean"]),
    "v1_null_value.json": (400, ["instance 1", "feature 'AveRooms'", "null"]),
    "v1_short_row.json": (400, ["instance 1", "expected 8 values"]),
    "v1_scalar_instance.json": (400, ["instance 1", "got a number"]),
    "v1_no_instances_key.json": (400, ["instances"]),
    "v1_malformed.json": (400, ["nrecognized request format"]),
    "v2_tensor_latitude_outside.json": (400, ["instance 1", "feature 'Latitude'", "29"]),
    "v2_int_datatype.json": (400, ["input 'input-0'", "INT64"]),
    "v2_bool_datatype.json": (400, ["input 'HouseAge'", "BOOL"]),
    "v2_string_in_fp64.json": (400, ["instance 0", "feature 'AveOccup'", "string"]),
    "v2_null_value.json": (400, ["instance 0", "feature 'Longitude'", "null"]),
    "v2_missing_named_input.json": (400, ["feature 'MedInc'", "missing"]),
    "v2_unknown_named_input.json": (400, ["feature 'Ocean'", "not a feature"]),
    "v2_wrong_width.json": (400, ["input 'input-0'", "[N, 8]"]),
    "v2_no_inputs.json": (400, ["'inputs' is empty"]),
    "v2_missing_shape.json": (422, ["shape", "Field required"]),
    "v2_malformed.json": (400, ["malformed JSON"]),
}


def test_every_testdata_file_has_a_case() -> None:
    assert {p.name for p in TESTDATA.glob("*.json")} == set(CASES)


def predictions_made(server: ServerProcess) -> float:
    """Instances that reached the model so far (the prediction-value histogram's count)."""
    text = server.get("/metrics").text
    found = re.findall(r"^model_server_prediction_value_count\{[^}]*\} (\S+)$", text, re.M)
    return sum(float(v) for v in found)


@pytest.fixture(scope="module")
def client(served: ServerProcess) -> httpx.Client:
    with served.client() as http:
        yield http


@pytest.fixture(scope="module")
def untouched(served: ServerProcess) -> object:
    """Asserts, after the module's bad requests, that none of them reached the model."""
    before = predictions_made(served)
    yield None
    assert predictions_made(served) == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_request_file(client: httpx.Client, untouched: object, name: str) -> None:
    status, fragments = CASES[name]
    path = V1 if name.startswith("v1_") else V2
    response = client.post(
        path, content=(TESTDATA / name).read_bytes(), headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    body = response.json()
    for fragment in fragments:
        assert fragment in body["error"], body
    if fragments[0].startswith("instance "):
        assert response.headers["x-model-version"] == "1"
        assert body["details"] and all("message" in d for d in body["details"])
