"""The contract checks, without a server: schema from signature + profile, values, v1, v2."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kserve import InferInput, InferRequest

from housing.contract import POSITIVE_FEATURES, PROFILE_VERSION, Profile, physical_violations
from model_server.errors import (
    BadRequestError,
    InvalidInstancesError,
    ModelServerError,
    PayloadTooLargeError,
)
from model_server.protocol import (
    v1_duplicate_keys,
    v1_features,
    v1_json,
    v2_features,
    v2_invalid_text,
)
from model_server.validation import (
    SMALL_MATRIX,
    ContractError,
    FeatureSchema,
    describe_type,
)
from tests.support.server import FEATURES, MODEL, ROWS

RANGES = {
    "MedInc": (0.0, 16.45),
    "HouseAge": (0.0, 57.1),
    "AveRooms": (0.0, 145.7),
    "AveBedrms": (0.0, 37.4),
    "Population": (0.0, 39249.9),
    "AveOccup": (0.0, 1367.6),
    "Latitude": (31.6, 42.9),
    "Longitude": (-125.35, -113.3),
}


def profile_of(ranges: dict[str, tuple[float, float]]) -> Profile:
    """A typed profile whose features have these valid ranges (statistics made up: the schema
    reads only the ranges)."""

    def column(name: str, lo: float, hi: float) -> dict[str, Any]:
        middle = (lo + hi) / 2
        histogram = {"edges": [middle], "proportions": [0.5, 0.5]}
        stats = {"min": lo, "max": hi, "mean": middle, "std": 1.0, "quantiles": {"0.5": middle}}
        return {"name": name, **stats, "histogram": histogram, "reference": [lo, hi]}

    features = [
        {**column(n, lo, hi), "dtype": "double", "valid_min": lo, "valid_max": hi}
        for n, (lo, hi) in ranges.items()
    ]
    return Profile.parse(
        {
            "profile_version": PROFILE_VERSION,
            "data_digest": "test",
            "rows": 2,
            "features": features,
            "target": column("MedHouseVal", 0.15, 5.0),
        }
    )


@pytest.fixture
def schema() -> FeatureSchema:
    return FeatureSchema.from_contract([(n, "double") for n in FEATURES], profile_of(RANGES))


def test_schema_follows_the_signature_order(schema: FeatureSchema) -> None:
    assert schema.names == FEATURES
    assert schema.valid_min[6] == 31.6 and schema.valid_max[6] == 42.9


@pytest.mark.parametrize(
    ("inputs", "ranges"),
    [
        ([(n, "double") for n in reversed(FEATURES)], RANGES),  # order differs from profile
        ([(n, "double") for n in FEATURES[:-1]], RANGES),  # profile has an extra feature
        ([(n, "string") for n in FEATURES], RANGES),  # not numbers
        ([(n, "double") for n in FEATURES], {**RANGES, "Latitude": (43.0, 42.0)}),
        ([], RANGES),  # no inputs
    ],
)
def test_inconsistent_contracts_are_refused(
    inputs: list[tuple[str, str]], ranges: dict[str, tuple[float, float]]
) -> None:
    with pytest.raises(ContractError):
        FeatureSchema.from_contract(inputs, profile_of(ranges))


def messages(error: pytest.ExceptionInfo[ModelServerError]) -> str:
    return error.value.message


def test_v1_rows_and_objects(schema: FeatureSchema) -> None:
    body = {"instances": [list(ROWS[0]), dict(zip(FEATURES, ROWS[1], strict=True))]}
    x = v1_features(body, schema, 10)
    assert x.shape == (2, 8) and x.dtype == np.float64
    np.testing.assert_array_equal(x, np.array(ROWS))


@pytest.mark.parametrize(
    ("instance", "fragments"),
    [
        ({**dict(zip(FEATURES, ROWS[0], strict=True)), "Latitude": 45.0}, ["feature 'Latitude'"]),
        (
            {k: v for k, v in zip(FEATURES, ROWS[0], strict=True) if k != "MedInc"},
            ["'MedInc'", "missing"],
        ),
        ({**dict(zip(FEATURES, ROWS[0], strict=True)), "Rooms": 1.0}, ["'Rooms'", "not a feature"]),
        ({**dict(zip(FEATURES, ROWS[0], strict=True)), "HouseAge": "41"}, ["'HouseAge'", "string"]),
        (
            {**dict(zip(FEATURES, ROWS[0], strict=True)), "HouseAge": True},
            ["'HouseAge'", "boolean"],
        ),
        ({**dict(zip(FEATURES, ROWS[0], strict=True)), "AveRooms": None}, ["'AveRooms'", "null"]),
        ({**dict(zip(FEATURES, ROWS[0], strict=True)), "AveRooms": [1]}, ["'AveRooms'", "array"]),
        (
            {**dict(zip(FEATURES, ROWS[0], strict=True)), "AveRooms": 10**400},
            ["'AveRooms'", "too large"],
        ),
        (
            {**dict(zip(FEATURES, ROWS[0], strict=True)), "Population": -1},
            ["'Population'", "below"],
        ),
        ({**dict(zip(FEATURES, ROWS[0], strict=True)), "Population": float("nan")}, ["NaN"]),
        ({**dict(zip(FEATURES, ROWS[0], strict=True)), "Population": float("inf")}, ["finite"]),
        (list(ROWS[0])[:7], ["expected 8 values"]),
        ([*ROWS[0], 1.0], ["expected 8 values"]),
        ("1,2,3", ["expected an array of 8 numbers or an object"]),
        (None, ["got null"]),
    ],
)
def test_v1_bad_instance_names_index_and_feature(
    schema: FeatureSchema, instance: Any, fragments: list[str]
) -> None:
    body = {"instances": [list(ROWS[1]), instance]}
    with pytest.raises(InvalidInstancesError) as error:
        v1_features(body, schema, 10)
    assert error.value.status_code == 400
    assert "instance 1" in messages(error)
    for fragment in fragments:
        assert fragment in messages(error)


@pytest.mark.parametrize(
    ("body", "kind", "fragment"),
    [
        ({"instances": []}, BadRequestError, "no instances"),
        ({"instances": [list(ROWS[0])] * 11}, PayloadTooLargeError, "at most 10"),
        ({"inputs": [list(ROWS[0])]}, BadRequestError, "instances"),
        ([list(ROWS[0])], BadRequestError, "instances"),
        ({"instances": {"MedInc": 1}}, BadRequestError, "must be an array"),
    ],
)
def test_v1_bad_bodies(
    schema: FeatureSchema, body: Any, kind: type[ModelServerError], fragment: str
) -> None:
    with pytest.raises(kind) as error:
        v1_features(body, schema, 10)
    assert fragment in messages(error)


def test_every_problem_is_reported_up_to_ten(schema: FeatureSchema) -> None:
    bad = [*ROWS[0][:6], 50.0, -100.0]  # latitude too high, longitude too far east
    with pytest.raises(InvalidInstancesError) as error:
        v1_features({"instances": [bad] * 7}, schema, 10)
    assert len(error.value.problems) == 14
    assert "(and 4 more)" in messages(error)
    assert {p.feature for p in error.value.problems} == {"Latitude", "Longitude"}


def tensor(name: str, shape: list[int], datatype: str, data: list[Any]) -> InferInput:
    return InferInput(name=name, shape=shape, datatype=datatype, data=data)


def test_v2_one_tensor_flat_or_nested(schema: FeatureSchema) -> None:
    flat = [v for row in ROWS for v in row]
    for data in (flat, [list(r) for r in ROWS]):
        request = InferRequest(MODEL, [tensor("input-0", [2, 8], "FP32", data)])
        np.testing.assert_allclose(v2_features(request, schema, 10), np.array(ROWS))


def test_v2_named_columns(schema: FeatureSchema) -> None:
    columns = [tensor(n, [2], "FP64", [r[j] for r in ROWS]) for j, n in enumerate(FEATURES)]
    x = v2_features(InferRequest(MODEL, list(reversed(columns))), schema, 10)
    np.testing.assert_array_equal(x, np.array(ROWS))


def column_request(change: dict[str, tuple[list[int], str, list[Any]]]) -> InferRequest:
    inputs = []
    for j, name in enumerate(FEATURES):
        shape, datatype, data = change.get(name, ([2], "FP64", [r[j] for r in ROWS]))
        if datatype:
            inputs.append(tensor(name, shape, datatype, data))
    return InferRequest(MODEL, inputs)


@pytest.mark.parametrize(
    ("request_", "fragments"),
    [
        (column_request({"Latitude": ([2], "FP64", [37.0, 99.0])}), ["instance 1", "'Latitude'"]),
        (column_request({"Latitude": ([2], "FP64", [37.0, "x"])}), ["instance 1", "string"]),
        (column_request({"Latitude": ([2], "FP64", [37.0, None])}), ["instance 1", "null"]),
        (column_request({"Latitude": ([2], "FP64", [True, 37.0])}), ["instance 0", "boolean"]),
        (column_request({"Latitude": ([2], "", [])}), ["'Latitude'", "missing"]),
        (column_request({"Latitude": ([2], "BOOL", [True, False])}), ["'Latitude'", "BOOL"]),
        (column_request({"Latitude": ([2], "BYTES", ["a", "b"])}), ["'Latitude'", "BYTES"]),
        (column_request({"Latitude": ([3], "FP64", [1.0, 2.0, 3.0])}), ["different lengths"]),
        (column_request({"Latitude": ([2], "FP64", [37.0])}), ["'Latitude'", "2 values"]),
        (
            InferRequest(MODEL, [tensor("x", [2, 8], "INT64", [1] * 16)]),
            ["'x'", "INT64", "FP32 or FP64"],
        ),
        (
            InferRequest(MODEL, [tensor("x", [2, 7], "FP64", [1.0] * 14)]),
            ["'x'", "[N, 8]"],
        ),
        (
            InferRequest(MODEL, [tensor("x", [2, 8], "FP64", [*ROWS[0], *ROWS[1][:6], 50.0, 1.0])]),
            ["instance 1, feature 'Latitude'", "instance 1, feature 'Longitude'"],
        ),
        (InferRequest(MODEL, [tensor("x", [0, 8], "FP64", [])]), ["no instances"]),
        (InferRequest(MODEL, [tensor("x", [11, 8], "FP64", [1.0] * 88)]), ["at most 10"]),
        (InferRequest(MODEL, []), ["'inputs' is empty"]),
    ],
)
def test_v2_bad_requests(
    schema: FeatureSchema, request_: InferRequest, fragments: list[str]
) -> None:
    with pytest.raises(ModelServerError) as error:
        v2_features(request_, schema, 10)
    assert 400 <= error.value.status_code < 500
    for fragment in fragments:
        assert fragment in messages(error)


def test_v2_unknown_requested_output(schema: FeatureSchema) -> None:
    from kserve.protocol.infer_type import RequestedOutput

    request = column_request({})
    request.request_outputs = [RequestedOutput("probabilities")]
    with pytest.raises(BadRequestError, match="unknown output 'probabilities'"):
        v2_features(request, schema, 10)


@pytest.mark.parametrize(
    ("value", "problem"),
    [(1, None), (1.5, None), (True, "boolean"), ("1", "string"), (None, "null"), ({}, "object")],
)
def test_describe_type(value: object, problem: str | None) -> None:
    described = describe_type(value)
    assert described is None if problem is None else problem in (described or "")


finite_in_range = st.lists(
    st.tuples(
        *[
            st.floats(lo, hi, allow_nan=False, exclude_min=name in POSITIVE_FEATURES)
            for name, (lo, hi) in RANGES.items()
        ]
    ).filter(lambda r: r[3] <= r[2]),  # AveBedrms not above AveRooms
    min_size=1,
    max_size=20,
)


@settings(max_examples=50, deadline=None)
@given(rows=finite_in_range)
def test_values_in_range_pass_unchanged(rows: list[tuple[float, ...]]) -> None:
    schema = FeatureSchema.from_contract([(n, "double") for n in FEATURES], profile_of(RANGES))
    body = {"instances": [list(r) for r in rows]}
    np.testing.assert_array_equal(v1_features(body, schema, 100), np.array(rows))


@settings(max_examples=50, deadline=None)
@given(
    row=st.sampled_from(range(3)),
    col=st.sampled_from(range(8)),
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not -200 < v < 200),
        st.just(float("nan")),
    ),
)
def test_any_value_outside_is_refused_with_its_place(row: int, col: int, value: float) -> None:
    schema = FeatureSchema.from_contract([(n, "double") for n in FEATURES], profile_of(RANGES))
    rows = [list(ROWS[0]) for _ in range(3)]
    rows[row][col] = value
    if schema.valid_min[col] <= value <= schema.valid_max[col]:
        return
    with pytest.raises(InvalidInstancesError) as error:
        v1_features({"instances": rows}, schema, 100)
    assert [(p.instance, p.feature) for p in error.value.problems] == [(row, FEATURES[col])]


def test_every_servable_signature_type_has_a_v2_datatype() -> None:
    from model_server.protocol import V2_DATATYPE
    from model_server.validation import NUMERIC_TYPES

    assert set(V2_DATATYPE) == NUMERIC_TYPES


def test_v1_json_names_what_the_fast_parser_refuses(schema: FeatureSchema) -> None:
    body = b'{"instances": [[NaN, 41, 6, 1, 322, 2.5, 37.8, -122.2]]}'
    with pytest.raises(InvalidInstancesError, match=r"instance 0, feature 'MedInc': NaN"):
        v1_features(v1_json(body, None), schema, 10)
    with pytest.raises(BadRequestError, match=r"Content-Type 'text/plain'; the body must be JSON"):
        v1_json(b"MedInc=1", "text/plain")
    with pytest.raises(BadRequestError, match="Unrecognized request format: "):
        v1_json(b"[" * 100_000 + b"]" * 100_000, "application/json; charset=utf-8")


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        (b'{"instances": [[1, 2]]}', []),
        (b'{"instances": [{"a": "b\\": c"}]}', []),  # a key-like string value: no duplicate
        (
            b'{"instances": [[1], {"a": 1, "b": 2, "a": 3}]}',
            ["instance 1, feature 'a': appears more than once in the object"],
        ),
        (b'{"instances": [], "instances": []}', ["key 'instances' appears more than once"]),
        (b'{"instances": [{"a": {"c": 1, "c": 2}}]}', ["key 'c' appears more than once"]),
    ],
)
def test_v1_duplicate_keys(body: bytes, problems: list[str]) -> None:
    found = [str(p) for p in v1_duplicate_keys(body, v1_json(body, None))]
    assert len(found) == len(problems)
    for text, expected in zip(found, problems, strict=True):
        assert expected in text


def test_v2_text_that_is_not_unicode_is_found() -> None:
    tensor = InferInput("\ud800", [1, 8], "FP64", data=list(ROWS[0]))
    request = InferRequest(MODEL, [tensor], request_id="ok", parameters={"k\udfff": "v"})
    assert v2_invalid_text(request) == ["parameters key", "inputs[0].name"]
    fine = InferRequest(MODEL, [InferInput("Médïan", [1, 8], "FP64", data=list(ROWS[0]))])
    assert v2_invalid_text(fine) == []


# -- physical bounds (housing.contract): inside the profile's range, still impossible ----------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"AveOccup": 0.0}, [(0, "AveOccup", "0 is impossible: AveOccup must be > 0")]),
        ({"AveRooms": 0.0, "AveBedrms": 0.0}, [(0, "AveRooms", "AveRooms must be > 0")]),
        ({"Population": 0.0}, [(0, "Population", "Population must be > 0")]),
        (
            {"AveRooms": 2.0, "AveBedrms": 3.0},
            [(0, "AveBedrms", "3 is above AveRooms 2: AveBedrms cannot exceed AveRooms")],
        ),
        ({"AveRooms": 2.0, "AveBedrms": 2.0}, []),  # equal is possible: every room a bedroom
        ({"MedInc": 0.0, "HouseAge": 0.0, "AveBedrms": 0.0}, []),  # zero is possible there
    ],
)
def test_physically_impossible_values_are_refused_inside_the_range(
    schema: FeatureSchema, changes: dict[str, float], expected: list[tuple[int, str, str]]
) -> None:
    row = dict(zip(FEATURES, ROWS[0], strict=True)) | changes
    body = {"instances": [list(ROWS[0]), [row[n] for n in FEATURES]]}
    if not expected:
        v1_features(body, schema, 10)
        return
    with pytest.raises(InvalidInstancesError) as error:
        v1_features(body, schema, 10)
    got = [(p.instance, p.feature, str(p)) for p in error.value.problems]
    assert [(i + 1, f) for i, f, _ in expected] == [(i, f) for i, f, _ in got]
    for (_, _, message), (_, _, text) in zip(expected, got, strict=True):
        assert message in text


def test_a_value_out_of_range_is_named_once(schema: FeatureSchema) -> None:
    row = dict(zip(FEATURES, ROWS[0], strict=True)) | {"AveOccup": -1.0}
    with pytest.raises(InvalidInstancesError) as error:
        v1_features({"instances": [[row[n] for n in FEATURES]]}, schema, 10)
    assert [(p.feature, "below valid_min" in str(p)) for p in error.value.problems] == [
        ("AveOccup", True)
    ]


# Values at and beside every bound that matters: the ranges', the physical (0), and others.
EDGES = sorted(
    {v for lo, hi in RANGES.values() for v in (lo, hi)}
    | {0.0, 5e-324, -5e-324, 1.0, 2.0, 3.0, 35.0, -120.0}
    | {float("nan"), float("inf"), float("-inf")},
    key=repr,
)
edge_rows = st.lists(
    st.lists(st.sampled_from(EDGES), min_size=8, max_size=8), min_size=1, max_size=SMALL_MATRIX
)


@settings(max_examples=300, deadline=None)
@given(rows=edge_rows)
def test_the_quick_acceptance_agrees_with_the_itemized_search(
    rows: list[list[float]],
) -> None:
    """`check` accepts at once what is valid, in Python (few rows) or numpy (more rows); the
    itemized search (the problems it would list) is the reference."""
    schema = FeatureSchema.from_contract([(n, "double") for n in FEATURES], profile_of(RANGES))
    x = np.array(rows, dtype=np.float64)
    low, high = schema.valid_min, schema.valid_max
    itemized_ok = bool(((x >= low) & (x <= high)).all()) and not physical_violations(FEATURES, x)
    many = np.vstack([x] * (SMALL_MATRIX // len(x) + 1))
    assert len(many) > SMALL_MATRIX
    assert schema._valid(x) == itemized_ok
    assert schema._valid(many) == itemized_ok
