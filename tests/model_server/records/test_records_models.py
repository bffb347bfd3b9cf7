"""Records as values: cleaning on the way in, the spill-file JSON, and the summary maths.
No database here."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from housing.servingdb import RequestRecord
from housing.servingdb.models import (
    insert_params,
    parse_prediction_id,
    record_from_json,
    record_to_json,
    sqlite_timestamp,
    to_row,
)
from housing.servingdb.summary import build_summary, percentile
from model_server.records.spill import encode
from tests.support.records import new_record


def test_to_row_cleans_what_json_and_postgres_cannot_hold() -> None:
    record = new_record(
        features=["MedInc", "HouseAge", "Note\x00"],
        inputs=[[float("nan"), float("inf"), "a\x00b"]],
        outputs=[float("-inf")],
        error="bad\x00 value",
        model_version=3,
    )
    row = to_row(record)
    assert row["features"] == ["MedInc", "HouseAge", "Note"]
    assert row["inputs"] == [[None, None, "ab"]]
    assert row["outputs"] == [None] and row["instances"] == 1
    assert row["error"] == "bad value"
    assert row["model_version"] == "3"
    json.dumps(row["inputs"], allow_nan=False)


def test_the_fast_path_stores_what_to_row_stores() -> None:
    """The server's numpy arrays (float32 outputs too) take the orjson path; any other form of
    the same record goes through to_row: the same parameters either way."""
    x = np.array([[8.3252, 41.0, float("nan")], [0.1, 3.602879701896397e16, -1.5]])
    y = np.array([4.526, float("inf")], dtype=np.float64)
    names = ("MedInc", "HouseAge", "AveRooms")
    fast = new_record(features=names, inputs=x, outputs=y, created_at=datetime.now(UTC))
    slow = fast._replace(features=list(names), inputs=x.tolist(), outputs=y.tolist())
    assert insert_params(fast, sqlite_timestamp) == insert_params(slow, sqlite_timestamp)
    params = insert_params(fast, sqlite_timestamp)
    assert json.loads(params[7]) == [[8.3252, 41.0, None], [0.1, 3.602879701896397e16, -1.5]]
    assert json.loads(params[8]) == [4.526, None] and params[9] == 2
    as_float32 = fast._replace(outputs=y.astype(np.float32))
    assert json.loads(insert_params(as_float32, sqlite_timestamp)[8])[0] == float(np.float32(4.526))


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("0193a1b2-0000-7000-8000-000000000000.0", ("0193a1b2-0000-7000-8000-000000000000", 0)),
        ("abc.12", ("abc", 12)),
        ("a.b.3", ("a.b", 3)),
        ("abc", None),
        ("abc.", None),
        (".3", None),
        ("abc.03", None),  # one prediction, one id
        ("abc.-1", None),
        ("abc.1e3", None),
        ("abc.\u0663", None),  # a digit, but not ASCII
    ],
)
def test_prediction_ids_parse_only_in_their_canonical_form(
    value: str, parsed: tuple[str, int] | None
) -> None:
    assert parse_prediction_id(value) == parsed


def test_to_row_takes_naive_time_as_utc_and_converts_other_zones() -> None:
    naive = datetime(2024, 5, 1, 12, 0, 0)
    assert to_row(new_record(created_at=naive))["created_at"] == naive.replace(tzinfo=UTC)
    paris = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    converted = to_row(new_record(created_at=paris))["created_at"]
    assert converted == datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert converted.tzinfo == UTC


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": ""}, "id is empty"),
        ({"id": None}, "id is missing"),
        ({"latency_ms": float("nan")}, "latency_ms"),
        ({"latency_ms": None}, "latency_ms"),
        ({"status": True}, "status"),
        ({"status": 999}, "not HTTP"),
        ({"outputs": ["2.5"]}, "outputs"),
        ({"outputs": "2.5"}, "outputs"),
        ({"outputs": [[2.5]]}, "outputs"),
        ({"outputs": [2.5, 3.5]}, "1 input rows but 2 outputs"),
        ({"inputs": [[1.0, 2.0]]}, "8 values"),
        ({"inputs": [1.0] * 8}, "8 values"),
        ({"features": None}, "inputs must be rows"),
        ({"features": "MedInc"}, "features"),
        ({"created_at": "2024-01-01"}, "created_at"),
    ],
)
def test_to_row_rejects_records_that_describe_nothing(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        to_row(new_record(**overrides))


def test_to_row_rejects_what_is_not_a_record() -> None:
    with pytest.raises(ValueError, match="expected a RequestRecord"):
        to_row({"id": "x"})  # type: ignore[arg-type]


finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)


@st.composite
def arrays(draw: st.DrawFn) -> tuple[list[str] | None, list[list[float]] | None, list[float]]:
    names = draw(st.lists(text, max_size=8))
    count = draw(st.integers(0, 5))
    rows = draw(
        st.lists(
            st.lists(finite, min_size=len(names), max_size=len(names)),
            min_size=count,
            max_size=count,
        )
    )
    outputs = draw(st.lists(st.none() | finite, min_size=count, max_size=count))
    return (names, rows, outputs) if draw(st.booleans()) else (None, None, outputs)


records = st.builds(
    lambda shape, **fields: RequestRecord(
        **fields, features=shape[0], inputs=shape[1], outputs=shape[2]
    ),
    shape=arrays(),
    id=st.uuids().map(lambda u: u.hex),
    request_id=st.uuids().map(lambda u: u.hex),
    created_at=st.datetimes(timezones=st.just(UTC)),
    model_name=text,
    model_version=text,
    protocol=st.sampled_from(["v1", "v2"]),
    latency_ms=finite,
    status=st.integers(100, 599),
    error=st.none() | text,
    # Named, or builds() draws it from the type hint, NULs included (which to_row cleans).
    shadow_of=st.none() | text,
)


@given(records)
def test_spill_json_round_trips_every_clean_record(record: RequestRecord) -> None:
    line = encode(record)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert record_from_json(json.loads(line)) == record


@given(st.floats(), st.floats(), st.text())
def test_spill_json_is_strict_json_whatever_the_record_holds(
    value: float, output: float, note: str
) -> None:
    record = new_record(
        features=["MedInc", note], inputs=[[value, output]], outputs=[output], error=note
    )
    json.loads(json.dumps(record_to_json(record), allow_nan=False))
    arrays = record._replace(inputs=np.array([[value, output]]), outputs=np.array([output]))
    json.loads(json.dumps(record_to_json(arrays), allow_nan=False))


def test_spill_lines_from_before_the_request_log_are_one_instance_requests() -> None:
    old = {
        "id": "0193a1b2-0000-7000-8000-00000000002a",
        "request_id": "r",
        "created_at": "2026-12-01T10:00:00+00:00",
        "model_name": "california-housing",
        "model_version": "3",
        "protocol": "v1",
        "inputs": {"MedInc": 8.3, "HouseAge": 41.0},
        "output": 4.5,
        "latency_ms": 2.0,
        "status": 200,
        "error": None,
        "shadow_of": None,
    }
    record = record_from_json(old)
    assert record.id == old["id"] and record.features == ["MedInc", "HouseAge"]
    assert record.inputs == [[8.3, 41.0]] and record.outputs == [4.5]
    failed = record_from_json(old | {"inputs": None, "output": None, "status": 400})
    assert to_row(failed)["instances"] == 0 and failed.outputs is None


@given(st.lists(finite.filter(lambda v: abs(v) < 1e300), min_size=1, max_size=200))
def test_percentile_matches_numpy(values: list[float]) -> None:
    ordered = sorted(values)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        ours = percentile(ordered, q)
        assert ours is not None
        assert math.isclose(
            ours, float(np.percentile(ordered, q * 100)), rel_tol=1e-9, abs_tol=1e-9
        )


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 0.5) is None


def test_summary_counts_and_rates_by_protocol() -> None:
    summary = build_summary(
        counts=[("v1", 8, 6), ("v2", 2, 2)],
        latencies=[("v1", float(v)) for v in range(1, 9)] + [("v2", 100.0), ("v2", 200.0)],
    )
    assert summary["total"] == 10 and summary["ok"] == 8 and summary["errors"] == 2
    assert summary["success_rate"] == pytest.approx(0.8)
    assert summary["latency_window"] == 10
    assert summary["by_protocol"]["v1"]["success_rate"] == pytest.approx(0.75)
    assert summary["by_protocol"]["v1"]["latency_ms"]["p50"] == pytest.approx(4.5)
    assert summary["by_protocol"]["v2"]["latency_ms"]["p50"] == pytest.approx(150.0)
    json.dumps(summary, allow_nan=False)


def test_summary_of_nothing_says_so() -> None:
    summary = build_summary([], [])
    assert summary["total"] == 0 and summary["success_rate"] is None
    assert summary["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert summary["by_protocol"] == {}
