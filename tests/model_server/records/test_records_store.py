"""RecordStore on SQLite and on PostgreSQL: writes, feedback, the read API, bad input."""

from __future__ import annotations

import concurrent.futures
import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from housing.servingdb import (
    InvalidFeedbackError,
    RecordStore,
    RequestRecord,
    StoreUnavailableError,
    UnknownPredictionError,
)
from housing.servingdb.models import prediction_feedback, request_log, to_row
from tests.support.records import failed_record, first_id, new_record, new_records


def stored_row(store: RecordStore, prediction_id: str) -> dict[str, object]:
    """The log's entry of one prediction, as /logs shows it."""
    [entry] = [row for row in store.recent(10_000) if row["id"] == prediction_id]
    return entry


def test_write_batch_is_idempotent_on_id(store: RecordStore) -> None:
    batch = new_records(50)
    store.write_batch(batch)
    store.write_batch(batch)  # a retried batch
    store.write_batch(batch[:10] + new_records(5) + batch[:10])  # overlap, duplicates inside
    assert store.count() == 55


def test_write_batch_is_one_transaction(store: RecordStore) -> None:
    batch = [*new_records(10), new_record(latency_ms=float("nan")), *new_records(10)]
    with pytest.raises(ValueError, match="latency_ms"):
        store.write_batch(batch)
    assert store.count() == 0


def test_rows_come_back_as_written(store: RecordStore) -> None:
    when = datetime(2024, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
    record = new_record(
        created_at=when,
        features=["MedInc", "HouseAge"],
        inputs=[[8.3, 41]],
        outputs=[4.526],
        error=None,
    )
    failed = failed_record(error="MedInc: NaN", protocol="v2")
    store.write_batch([record, failed])
    rows = {row["id"]: row for row in store.recent(10)}
    assert set(rows) == {first_id(record), first_id(failed)}
    got = rows[first_id(record)]
    assert got["created_at"] == "2024-03-01T08:30:15.123456+00:00"
    assert got["inputs"] == {"MedInc": 8.3, "HouseAge": 41}
    assert got["output"] == 4.526 and got["status"] == 200 and got["actual"] is None
    assert rows[first_id(failed)]["inputs"] is None
    assert rows[first_id(failed)]["error"] == "MedInc: NaN"
    assert rows[first_id(failed)]["output"] is None
    with store.engine.connect() as connection:
        # No inputs is SQL NULL, not the JSON text 'null'.
        nulls = "SELECT id FROM request_log WHERE inputs IS NULL"
        assert connection.exec_driver_sql(nulls).scalars().all() == [failed.id]
    json.dumps(store.recent(10), allow_nan=False)


def test_recent_is_newest_first_and_limited(store: RecordStore) -> None:
    batch = new_records(30, start=datetime(2024, 1, 1, tzinfo=UTC))
    store.write_batch(list(reversed(batch)))
    recent = store.recent(5)
    assert [row["id"] for row in recent] == [first_id(r) for r in reversed(batch[-5:])]
    assert store.recent(0) == []
    assert len(store.recent(1000)) == 30


@pytest.mark.parametrize("limit", [-1, 10_001, 2.5, "10", True])
def test_limits_are_checked(store: RecordStore, limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.recent(limit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        store.labelled(None, limit)  # type: ignore[arg-type]


def test_feedback_is_stored_and_a_second_one_replaces_the_first(store: RecordStore) -> None:
    record = new_record(outputs=[2.0])
    store.write_batch([record])
    store.add_feedback(first_id(record), 1.5)
    first = stored_row(store, first_id(record))
    store.add_feedback(first_id(record), 1.75)
    second = stored_row(store, first_id(record))
    assert first["actual"] == 1.5 and second["actual"] == 1.75
    assert first["feedback_at"] is not None and second["feedback_at"] is not None
    assert store.labelled(None, 10) == [(2.0, 1.75)]
    store.add_feedback(first_id(record), np.float32(3.0))  # type: ignore[arg-type]  # numpy too
    assert store.labelled(None, 10) == [(2.0, 3.0)]


def test_feedback_for_an_unknown_prediction_is_a_404(store: RecordStore) -> None:
    store.write_batch(new_records(3))
    for unknown in ("0" * 32, "nope", "bad\x00id", "x" * 10_000):
        with pytest.raises(UnknownPredictionError) as caught:
            store.add_feedback(unknown, 1.0)
        assert caught.value.status_code == 404
        assert isinstance(caught.value, LookupError)
    assert store.count() == 3
    assert store.labelled(None, 10) == []


@pytest.mark.parametrize(
    "actual", [float("nan"), float("inf"), -float("inf"), "1.5", None, True, [1.0]]
)
def test_bad_feedback_is_refused_and_changes_nothing(store: RecordStore, actual: object) -> None:
    record = new_record()
    store.write_batch([record])
    store.add_feedback(first_id(record), 2.0)
    before = stored_row(store, first_id(record))
    with pytest.raises(ValueError, match="actual must be") as caught:
        store.add_feedback(first_id(record), actual)  # type: ignore[arg-type]
    assert isinstance(caught.value, InvalidFeedbackError) and caught.value.status_code == 400
    assert stored_row(store, first_id(record)) == before


@pytest.mark.parametrize("prediction_id", ["", None, 42])
def test_feedback_needs_a_prediction_id(store: RecordStore, prediction_id: object) -> None:
    with pytest.raises(InvalidFeedbackError, match="prediction id"):
        store.add_feedback(prediction_id, 1.0)  # type: ignore[arg-type]


def test_a_replayed_batch_keeps_its_feedback(store: RecordStore) -> None:
    batch = new_records(5)
    store.write_batch(batch)
    store.add_feedback(first_id(batch[0]), 9.0)
    store.write_batch(batch)  # replay after a crash, say
    assert stored_row(store, first_id(batch[0]))["actual"] == 9.0


def test_labelled_is_newest_first_by_version_and_only_with_feedback(store: RecordStore) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    v1 = new_records(6, start=start, model_version="1")
    v2 = new_records(4, start=start + timedelta(seconds=1), model_version="2")
    failed = failed_record(created_at=start + timedelta(seconds=5), status=500)
    store.write_batch([*v1, *v2, failed])
    for i, record in enumerate([*v1[:4], *v2[:3]]):
        store.add_feedback(first_id(record), float(i))
    store.add_feedback(
        first_id(failed), 1.0
    )  # kept, but a failed prediction has nothing to compare
    assert store.labelled("1", 10) == [(2.5, 3.0), (2.5, 2.0), (2.5, 1.0), (2.5, 0.0)]
    assert store.labelled("1", 2) == [(2.5, 3.0), (2.5, 2.0)]
    assert store.labelled("2", 10) == [(2.5, 6.0), (2.5, 5.0), (2.5, 4.0)]
    assert store.labelled(None, 3) == [(2.5, 6.0), (2.5, 5.0), (2.5, 4.0)]
    assert store.labelled("3", 10) == []


def test_summary_counts_rates_and_latency_percentiles(store: RecordStore) -> None:
    latencies = [float(v) for v in range(1, 101)]
    ok = [new_record(latency_ms=v, protocol="v1") for v in latencies[:80]]
    v2 = [new_record(latency_ms=v, protocol="v2") for v in latencies[80:95]]
    errors = [failed_record(latency_ms=v, status=400) for v in latencies[95:]]
    store.write_batch([*ok, *v2, *errors])
    summary = store.summary()
    assert (summary["total"], summary["ok"], summary["errors"]) == (100, 95, 5)
    assert summary["success_rate"] == pytest.approx(0.95)
    for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        assert summary["latency_ms"][name] == pytest.approx(np.percentile(latencies, q))
    v1 = summary["by_protocol"]["v1"]
    assert (v1["total"], v1["ok"], v1["errors"]) == (85, 80, 5)
    assert summary["by_protocol"]["v2"]["success_rate"] == 1.0
    assert summary["by_protocol"]["v2"]["latency_ms"]["p50"] == pytest.approx(88.0)
    json.dumps(summary, allow_nan=False)


def test_summary_of_an_empty_store(store: RecordStore) -> None:
    summary = store.summary()
    assert summary["total"] == 0 and summary["success_rate"] is None
    assert summary["latency_ms"]["p99"] is None and store.count() == 0


texts = st.text(max_size=30)
wild_floats = st.floats() | st.integers(-(10**20), 10**20)
wild_values = wild_floats | texts | st.none()


@st.composite
def wild_arrays(draw: st.DrawFn) -> dict[str, object]:
    """features, inputs and outputs of any shape and content (mostly of matching shapes)."""
    names = draw(st.none() | st.lists(texts, max_size=8) | texts)
    width = len(names) if isinstance(names, list) else 3
    count = draw(st.integers(0, 4))
    rows = st.lists(wild_values, min_size=width, max_size=width) | st.lists(wild_values)
    inputs = draw(st.none() | st.lists(rows, min_size=count, max_size=count))
    outputs = draw(
        st.none()
        | st.lists(st.none() | st.floats() | texts, min_size=count, max_size=count)
        | st.lists(st.floats())
    )
    if draw(st.booleans()) and isinstance(inputs, list) and isinstance(names, list):
        try:  # the server's form: numpy arrays
            inputs = np.array(inputs, dtype=np.float64)
            outputs = np.array(outputs, dtype=np.float64)
        except (TypeError, ValueError):
            pass
    return {"features": names, "inputs": inputs, "outputs": outputs}


wild_records = st.builds(
    lambda arrays, **fields: RequestRecord(**fields, **arrays),
    arrays=wild_arrays(),
    id=st.uuids().map(lambda u: u.hex),
    request_id=st.uuids().map(lambda u: u.hex),
    created_at=st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.one_of(st.none(), st.timezones()),
    ),
    model_name=texts,
    model_version=texts,
    protocol=texts,
    latency_ms=st.floats(),
    status=st.integers(0, 700),
    error=st.none() | texts,
    shadow_of=st.none() | texts,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(wild_records, min_size=1, max_size=5))
def test_any_record_is_stored_cleanly_or_refused_whole(
    store: RecordStore, batch: list[RequestRecord]
) -> None:
    with store.engine.begin() as connection:  # examples share the store
        connection.execute(sa.delete(request_log))
    try:
        expected = [to_row(record) for record in batch]
    except ValueError:
        with pytest.raises(ValueError):
            store.write_batch(batch)
        assert store.count() == 0
        return
    store.write_batch(batch)
    assert len(store.recent(10_000)) == store.count()
    first = {}
    for row in expected:  # a repeated id keeps the first record
        first.setdefault(row["id"], row)
    for row in first.values():
        with store.engine.connect() as connection:
            statement = sa.select(request_log).where(request_log.c.id == row["id"])
            got = dict(connection.execute(statement).one()._mapping)
        created_at = got.pop("created_at")
        assert isinstance(created_at, datetime)
        # Microseconds survive on both databases; aware UTC on the way out.
        assert created_at.replace(tzinfo=UTC) == row.pop("created_at").replace(tzinfo=UTC)
        assert got == row


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    with RecordStore(sqlite_url, busy_timeout=2.5) as store:
        store.migrate()
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500


def test_a_locked_sqlite_database_is_unavailable_not_broken(sqlite_url: str) -> None:
    with RecordStore(sqlite_url, busy_timeout=0.1) as store:
        store.migrate()
        with store.engine.connect() as holder:
            holder.execution_options(sqlite_begin="BEGIN EXCLUSIVE")
            with holder.begin():
                with pytest.raises(StoreUnavailableError, match="locked") as caught:
                    store.write_batch(new_records(2))
                assert caught.value.status_code == 503
        store.write_batch(new_records(2))
        assert store.count() == 2


@pytest.mark.postgres
def test_an_unreachable_postgres_is_unavailable() -> None:
    store = RecordStore("postgresql://root@127.0.0.1:1/nothing", connect_timeout=2)
    with store, pytest.raises(StoreUnavailableError, match="unavailable"):
        store.count()


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"]
)
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="in-memory SQLite"):
        RecordStore(url)


def test_unsupported_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        RecordStore("mysql+pymysql://root@localhost/db")


def test_bare_postgresql_urls_use_psycopg_3() -> None:
    store = RecordStore("postgresql://root@127.0.0.1:5432/db")
    assert store.url.drivername == "postgresql+psycopg"
    store.close()


def test_sqlite_creates_the_folder_of_its_file(sqlite_url: str) -> None:
    with RecordStore(sqlite_url) as store:
        store.migrate()
        store.write_batch(new_records(1))
        assert store.count() == 1


def _plan(store: RecordStore, statement: sa.Select[tuple[object, ...]]) -> str:
    compiled = statement.compile(store.engine, compile_kwargs={"literal_binds": True})
    with store.engine.connect() as connection:
        if store.dialect == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
            return " ".join(str(row[-1]) for row in rows)
        # Tables this small are scanned whatever the indexes; ask whether one can serve.
        connection.exec_driver_sql("SET enable_seqscan = off")
        # Nor a bitmap scan then a sort, which wins on a table of a few rows.
        connection.exec_driver_sql("SET enable_bitmapscan = off")
        return " ".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}"))


def test_the_read_queries_use_their_indexes(store: RecordStore) -> None:
    r, f = request_log, prediction_feedback
    batch = new_records(20)
    store.write_batch(batch)
    for record in batch[:5]:
        store.add_feedback(first_id(record), 1.0)
    newest = sa.select(r.c.id, r.c.instances).order_by(r.c.created_at.desc()).limit(10)
    assert "ix_request_log_created_at" in _plan(store, newest)
    by_version = (
        sa.select(r.c.id, r.c.instances)
        .where(r.c.model_version == "1", r.c.instances > 0)
        .order_by(r.c.created_at.desc())
        .limit(10)
    )
    assert "ix_request_log_model_version_created_at" in _plan(store, by_version)
    labelled = sa.select(f.c.output, f.c.actual).where(f.c.output.is_not(None))
    plan = _plan(
        store, labelled.where(f.c.model_version == "1").order_by(f.c.created_at.desc()).limit(10)
    )
    assert "ix_prediction_feedback_labelled" in plan
    assert "SORT" not in plan.upper().replace("ORDER BY", "")
    plan = _plan(store, labelled.order_by(f.c.created_at.desc()).limit(10))
    assert "ix_prediction_feedback_labelled_created_at" in plan
    shadows = sa.select(r.c.id).where(r.c.shadow_of.in_(["a", "a.0"]))
    assert "ix_request_log_shadow_of" in _plan(store, shadows)


def test_store_methods_survive_many_threads(store: RecordStore) -> None:
    batches = [new_records(20) for _ in range(16)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(store.write_batch, batches))
        list(pool.map(lambda _: store.summary(), range(8)))
    assert store.count() == 320
    assert not math.isnan(store.summary()["latency_ms"]["p50"])


def test_feedback_reaches_the_shadows_of_a_prediction(store: RecordStore) -> None:
    served = new_records(3)
    shadows = [
        new_record(model_version="2", shadow_of=record.id, created_at=record.created_at)
        for record in served[:2]
    ]
    store.write_batch([*served, *shadows])
    store.add_feedback(first_id(served[0]), 4.0)
    assert stored_row(store, first_id(served[0]))["actual"] == 4.0
    assert stored_row(store, first_id(shadows[0]))["actual"] == 4.0
    assert stored_row(store, first_id(shadows[1]))["actual"] is None
    assert store.labelled("2", 10) == [(2.5, 4.0)]
    assert stored_row(store, first_id(shadows[0]))["shadow_of"] == first_id(served[0])


def test_shadow_predictions_are_not_counted_as_requests(store: RecordStore) -> None:
    served = new_records(4)
    shadows = [new_record(model_version="2", shadow_of=r.id, latency_ms=500.0) for r in served]
    store.write_batch([*served, *shadows])
    summary = store.summary()
    assert summary["total"] == 4 and summary["latency_ms"]["p99"] == pytest.approx(3.0)
    assert len(store.recent(10)) == 8  # the log shows them, marked


def test_coverage_counts_the_newest_predictions_of_a_version(store: RecordStore) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    old = new_records(5, start=start)
    new = new_records(4, start=start + timedelta(seconds=1))
    other = new_records(3, start=start + timedelta(seconds=2), model_version="2")
    failed = failed_record(created_at=start + timedelta(seconds=3), status=400)
    store.write_batch([*old, *new, *other, failed])
    for record in [*old, new[0], other[0]]:
        store.add_feedback(first_id(record), 1.0)
    assert store.coverage("1", 4) == (4, 1)
    assert store.coverage("1", 100) == (9, 6)
    assert store.coverage("2", 100) == (3, 1)
    assert store.coverage("3", 100) == (0, 0)


def test_a_request_is_one_row_and_one_entry_per_instance(store: RecordStore) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [[float(i)] * 8 for i in range(3)]
    request = new_record(3, created_at=start, inputs=rows, outputs=[1.0, 2.0, 3.0])
    later = new_record(created_at=start + timedelta(seconds=1))
    store.write_batch([request, later])
    with store.engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(request_log)) == 2
    assert store.count() == 4
    ids = [f"{request.id}.{i}" for i in range(3)]
    # Newest first: the later request, then the last instance first.
    assert [e["id"] for e in store.recent(10)] == [first_id(later), *reversed(ids)]
    assert [e["id"] for e in store.recent(2)] == [first_id(later), ids[2]]
    entry = stored_row(store, ids[1])
    assert entry["inputs"] == dict.fromkeys(entry["inputs"], 1.0) and entry["output"] == 2.0
    assert entry["request_id"] == request.request_id and entry["shadow_of"] is None
    store.add_feedback(ids[1], 2.5)
    assert stored_row(store, ids[1])["actual"] == 2.5
    assert stored_row(store, ids[0])["actual"] is None
    assert store.labelled("1", 10) == [(2.0, 2.5)]
    for unknown in (f"{request.id}.3", f"{request.id}.01", request.id, f"{later.id}.1"):
        with pytest.raises(UnknownPredictionError):
            store.add_feedback(unknown, 1.0)


def test_summary_and_coverage_count_instances(store: RecordStore) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    big = new_record(4, created_at=start, latency_ms=10.0)
    small = new_record(created_at=start + timedelta(seconds=1), latency_ms=1.0)
    refused = failed_record(created_at=start + timedelta(seconds=2), latency_ms=5.0)
    store.write_batch([big, small, refused])
    summary = store.summary()
    assert (summary["total"], summary["ok"], summary["errors"]) == (6, 5, 1)
    # Each instance waited for its request: 10 ms counts four times.
    assert summary["latency_window"] == 6
    assert summary["latency_ms"]["p50"] == pytest.approx(10.0)
    assert store.summary(latency_window=3)["latency_ms"]["p99"] == pytest.approx(9.9)
    store.add_feedback(f"{big.id}.3", 1.0)  # the newest instance of `big`
    store.add_feedback(f"{big.id}.0", 1.0)  # the oldest
    assert store.coverage("1", 2) == (2, 1)  # `small`, and big.3
    assert store.coverage("1", 5) == (5, 2)
    assert store.coverage("1", 100) == (5, 2)


def test_feedback_reaches_the_same_instance_of_a_shadow_request(store: RecordStore) -> None:
    served = new_record(3, outputs=[1.0, 2.0, 3.0])
    shadow = new_record(3, model_version="2", shadow_of=served.id, outputs=[1.5, 2.5, 3.5])
    store.write_batch([served, shadow])
    store.add_feedback(f"{served.id}.2", 3.2)
    assert store.labelled("1", 10) == [(3.0, 3.2)]
    assert store.labelled("2", 10) == [(3.5, 3.2)]
    entry = stored_row(store, f"{shadow.id}.2")
    assert entry["actual"] == 3.2 and entry["shadow_of"] == f"{served.id}.2"
    assert stored_row(store, f"{shadow.id}.1")["actual"] is None
    assert store.summary()["total"] == 3
