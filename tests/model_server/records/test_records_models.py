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

from housing.servingdb import PredictionRecord
from housing.servingdb.models import record_from_json, record_to_json, to_row
from housing.servingdb.summary import build_summary, percentile
from model_server.records.spill import encode
from tests.support.records import new_record


def test_to_row_cleans_what_json_and_postgres_cannot_hold() -> None:
    record = new_record(
        inputs={"MedInc": float("nan"), "HouseAge": float("inf"), "Note\x00": "a\x00b"},
        output=float("-inf"),
        error="bad\x00 value",
        model_version=3,
    )
    row = to_row(record)
    assert row["inputs"] == {"MedInc": None, "HouseAge": None, "Note": "ab"}
    assert row["output"] is None
    assert row["error"] == "bad value"
    assert row["model_version"] == "3"
    json.dumps(row["inputs"], allow_nan=False)


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
        ({"output": "2.5"}, "output"),
        ({"created_at": "2024-01-01"}, "created_at"),
    ],
)
def test_to_row_rejects_records_that_describe_nothing(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        to_row(new_record(**overrides))


def test_to_row_rejects_what_is_not_a_record() -> None:
    with pytest.raises(ValueError, match="expected a PredictionRecord"):
        to_row({"id": "x"})  # type: ignore[arg-type]


finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
records = st.builds(
    PredictionRecord,
    id=st.uuids().map(lambda u: u.hex),
    request_id=st.uuids().map(lambda u: u.hex),
    created_at=st.datetimes(timezones=st.just(UTC)),
    model_name=text,
    model_version=text,
    protocol=st.sampled_from(["v1", "v2"]),
    inputs=st.none() | st.dictionaries(text, finite, max_size=8),
    output=st.none() | finite,
    latency_ms=finite,
    status=st.integers(100, 599),
    error=st.none() | text,
    # Named, or builds() draws it from the type hint, NULs included (which to_row cleans).
    shadow_of=st.none() | text,
)


@given(records)
def test_spill_json_round_trips_every_clean_record(record: PredictionRecord) -> None:
    line = encode(record)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert record_from_json(json.loads(line)) == record


@given(st.floats(), st.floats(), st.text())
def test_spill_json_is_strict_json_whatever_the_record_holds(
    value: float, output: float, note: str
) -> None:
    record = new_record(inputs={"MedInc": value, note: output}, output=output, error=note)
    json.loads(json.dumps(record_to_json(record), allow_nan=False))


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
