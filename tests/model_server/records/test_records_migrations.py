"""The schema comes from alembic migrations shipped inside the package, on both databases."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from housing.contract import FEATURES
from housing.servingdb import RecordStore, UnknownPredictionError
from housing.servingdb.migrations import SCRIPT_LOCATION, VERSION_TABLE, alembic_config
from housing.servingdb.models import legacy_prediction_ids, metadata, request_log
from model_server.ids import new_ids
from tests.support.records import new_record

# What pyproject ships besides modules: [tool.setuptools.package-data] "*".
PACKAGE_DATA = ("*.json", "*.ini", "*.mako")


def test_migrate_creates_the_tables_their_indexes_and_our_version_table(
    database_url: str,
) -> None:
    with RecordStore(database_url) as store:
        store.migrate()
        store.migrate()  # at head already: nothing to do
        inspector = sa.inspect(store.engine)
        tables = set(inspector.get_table_names())
        assert {"request_log", "prediction_feedback", "legacy_prediction_ids"} <= tables
        assert VERSION_TABLE in tables and "predictions" not in tables
        assert "alembic_version" not in tables
        columns = {c["name"]: c for c in inspector.get_columns("request_log")}
        assert list(columns) == [
            "id",
            "request_id",
            "created_at",
            "model_name",
            "model_version",
            "protocol",
            "features",
            "inputs",
            "outputs",
            "instances",
            "latency_ms",
            "status",
            "error",
            "shadow_of",
        ]
        assert not columns["created_at"]["nullable"] and columns["inputs"]["nullable"]
        assert inspector.get_pk_constraint("request_log")["constrained_columns"] == ["id"]
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("request_log")}
        assert indexes == {
            "ix_request_log_created_at": ["created_at"],
            "ix_request_log_model_version_created_at": ["model_version", "created_at"],
            "ix_request_log_shadow_of": ["shadow_of"],
        }
        pk = inspector.get_pk_constraint("prediction_feedback")["constrained_columns"]
        assert pk == ["prediction_id"]
        indexes = {
            i["name"]: i["column_names"] for i in inspector.get_indexes("prediction_feedback")
        }
        assert indexes == {
            "ix_prediction_feedback_log_id": ["log_id"],
            "ix_prediction_feedback_labelled": ["model_version", "created_at"],
            "ix_prediction_feedback_labelled_created_at": ["created_at"],
        }
        with store.engine.connect() as connection:
            heads = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
            assert heads.scalars().all() == ["0004"]


def test_the_migrations_build_exactly_the_models(database_url: str) -> None:
    with RecordStore(database_url) as store:
        store.migrate()
        with store.engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "version_table": VERSION_TABLE,
                    "include_name": lambda name, type_, _: (
                        type_ != "table" or name in metadata.tables
                    ),
                },
            )
            assert compare_metadata(context, metadata) == []


def test_concurrent_migrations_do_not_collide(database_url: str) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with RecordStore(database_url) as store:
                store.migrate()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with RecordStore(database_url) as store:
        assert store.count() == 0


def test_downgrade_and_upgrade_again(database_url: str) -> None:
    with RecordStore(database_url) as store:
        store.migrate()
        with store.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        assert not {"predictions", "request_log"} & set(sa.inspect(store.engine).get_table_names())
        store.migrate()
        assert store.count() == 0


def test_migrate_needs_no_alembic_ini_nor_a_working_directory(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with RecordStore(sqlite_url) as store:
        store.migrate()
        assert store.count() == 0
    assert not list(tmp_path.glob("*.ini"))


def test_every_migration_file_is_shipped_in_the_wheel() -> None:
    files = [p for p in SCRIPT_LOCATION.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert {p.name for p in files} >= {
        "env.py",
        "script.py.mako",
        "v0001_predictions.py",
        "v0002_retrain.py",
        "v0003_shadow_predictions.py",
        "v0004_request_log.py",
    }
    for path in files:
        # Modules ship with their package (each folder has an __init__.py); the rest must
        # match the package-data patterns or a wheel would leave it out.
        if path.suffix == ".py":
            assert (path.parent / "__init__.py").exists(), path
        else:
            assert any(fnmatch(path.name, pattern) for pattern in PACKAGE_DATA), path


def test_env_py_refuses_to_run_without_a_connection() -> None:
    with pytest.raises(RuntimeError, match=r"RecordStore\.migrate"):
        command.upgrade(alembic_config(None), "head")


def test_v0003_keeps_existing_rows_and_goes_back_cleanly(database_url: str) -> None:
    with RecordStore(database_url) as store:
        with store.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0002")
            connection.execute(
                sa.text(
                    "INSERT INTO predictions (id, request_id, created_at, model_name, "
                    "model_version, protocol, latency_ms, status) "
                    "VALUES ('a', 'r', CURRENT_TIMESTAMP, 'm', '1', 'v1', 1.0, 200)"
                )
            )
        store.migrate()
        assert store.recent(1)[0]["shadow_of"] is None
        store.add_feedback("a", 2.0)  # looks for shadows too
        with store.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0002")
        inspector = sa.inspect(store.engine)
        assert "shadow_of" not in {c["name"] for c in inspector.get_columns("predictions")}
        indexes = {i["name"] for i in inspector.get_indexes("predictions")}
        assert "ix_predictions_labelled" in indexes and "ix_predictions_shadow_of" not in indexes
        store.migrate()
        assert store.count() == 1


# -- v0004: per-instance rows become request rows ------------------------------------------

# `predictions` as revision 0003 left it, and as the server wrote it until the request log.
_v0003 = sa.MetaData()
old_predictions = sa.Table(
    "predictions",
    _v0003,
    sa.Column("id", sa.String()),
    sa.Column("request_id", sa.String()),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("model_name", sa.String()),
    sa.Column("model_version", sa.String()),
    sa.Column("protocol", sa.String()),
    sa.Column("inputs", sa.JSON(none_as_null=True)),
    sa.Column("output", sa.Float()),
    sa.Column("latency_ms", sa.Float()),
    sa.Column("status", sa.Integer()),
    sa.Column("error", sa.Text()),
    sa.Column("actual", sa.Float()),
    sa.Column("feedback_at", sa.DateTime(timezone=True)),
    sa.Column("shadow_of", sa.String()),
)


def _old_rows() -> list[dict[str, Any]]:
    """What the server wrote at revision 0003 (one row per instance), feedback included:
    a 3-instance request with its challenger's shadow, a later request reusing the client's
    request id, a refused request, a request whose shadow covers one instance only (never
    written by the server, possible in a database), and a shadow of nothing known."""
    start = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    feedback_at = start + timedelta(minutes=5)

    def instance(pid: str, **fields: Any) -> dict[str, Any]:
        row = {
            "id": pid,
            "request_id": "req-A",
            "created_at": start,
            "model_name": "california-housing",
            "model_version": "1",
            "protocol": "v1",
            "inputs": {name: float(i) + 0.25 for i, name in enumerate(FEATURES)},
            "output": 2.0,
            "latency_ms": 4.0,
            "status": 200,
            "error": None,
            "actual": None,
            "feedback_at": None,
            "shadow_of": None,
        }
        return row | fields

    served = new_ids(3)
    shadows = new_ids(3)
    third = start + timedelta(seconds=3)
    # v2 requests list the features in another order: a request row keeps its own.
    reordered = {name: 1.0 + i for i, name in enumerate(reversed(FEATURES))}
    return [
        *(
            instance(pid, output=1.0 + i / 3, actual=1.5 if i == 1 else None,
                     feedback_at=feedback_at if i == 1 else None)
            for i, pid in enumerate(served)
        ),
        *(
            instance(
                pid,
                model_version="2",
                output=2.0 + i,
                latency_ms=7.5,
                shadow_of=served[i],
                actual=1.5 if i == 1 else None,
                feedback_at=feedback_at if i == 1 else None,
            )
            for i, pid in enumerate(shadows)
        ),
        instance("later", created_at=start + timedelta(seconds=1), protocol="v2",
                 inputs=reordered, output=3.602879701896397e16, actual=9.0,
                 feedback_at=feedback_at),
        instance("refused", created_at=start + timedelta(seconds=2), inputs=None, output=None,
                 status=400, error="MedInc: not a number", request_id="req-F"),
        instance("c-0", created_at=third, request_id="req-C"),
        instance("c-1", created_at=third, request_id="req-C", output=5.0),
        instance("c-1-shadow", created_at=third, request_id="req-C", model_version="2",
                 shadow_of="c-1", output=6.0),
        instance("orphan-shadow", created_at=third, request_id="req-O", model_version="2",
                 shadow_of="gone"),
    ]  # fmt: skip


def _entry(old: dict[str, Any]) -> dict[str, Any]:
    """What /logs showed for an old row (its ids aside)."""
    entry = {k: v for k, v in old.items() if k not in ("id", "shadow_of")}
    entry["created_at"] = old["created_at"].isoformat()
    entry["feedback_at"] = old["feedback_at"] and old["feedback_at"].isoformat()
    return entry


def test_v0004_turns_every_prediction_into_an_instance_of_its_request(database_url: str) -> None:
    old = _old_rows()
    with RecordStore(database_url) as store:
        with store.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0003")
            connection.execute(old_predictions.insert(), old)
        store.migrate()

        with store.engine.connect() as connection:
            requests = connection.execute(sa.select(request_log)).mappings().all()
            legacy = {
                r.id: f"{r.log_id}.{r.instance}"
                for r in connection.execute(sa.select(legacy_prediction_ids))
            }
        # The served request, its shadow, the later one, the refused one, C, C's shadow of
        # one instance, the orphan shadow.
        assert len(requests) == 7
        by_request = {(r["request_id"], r["model_version"], r["created_at"]): r for r in requests}
        [served] = [r for r in requests if r["request_id"] == "req-A" and r["instances"] == 3
                    and r["shadow_of"] is None]  # fmt: skip
        assert served["features"] == list(FEATURES) and len(served["inputs"]) == 3
        assert served["outputs"] == [1.0, 1.0 + 1 / 3, 1.0 + 2 / 3]
        assert len(by_request) == 7

        # Every old row is one entry, with the same fields, under a new id the old one maps to.
        assert set(legacy) == {row["id"] for row in old}
        assert store.count() == len(old)
        entries = {entry["id"]: entry for entry in store.recent(100)}
        assert len(entries) == len(old)
        for row in old:
            entry = entries[legacy[row["id"]]]
            got = {k: v for k, v in entry.items() if k not in ("id", "shadow_of")}
            assert got == _entry(row), row["id"]
            if row["shadow_of"] in legacy:
                assert entry["shadow_of"] == legacy[row["shadow_of"]], row["id"]
        # The aligned shadow stays linked to its request; the others name what they shadow.
        [shadow] = [r for r in requests if r["shadow_of"] == served["id"]]
        assert shadow["instances"] == 3 and shadow["outputs"] == [2.0, 3.0, 4.0]
        assert entries[legacy["c-1-shadow"]]["shadow_of"] == legacy["c-1"]
        # A shadow of a prediction the database no longer holds (never written so: only rows
        # deleted by hand) keeps the old id, read as a request's id: "gone.0".
        assert entries[legacy["orphan-shadow"]]["shadow_of"] == "gone.0"

        # Feedback came along: the retraining signals read the same pairs as before.
        assert store.labelled("1", 10) == [(3.602879701896397e16, 9.0), (1.0 + 1 / 3, 1.5)]
        assert store.labelled("2", 10) == [(3.0, 1.5)]
        summary = store.summary()
        assert (summary["total"], summary["ok"]) == (7, 6)

        # Every old id still takes feedback, and it still reaches the shadows.
        for row in old:
            store.add_feedback(row["id"], 0.5)
        store.add_feedback(old[0]["id"], 0.25)
        after = {entry["id"]: entry for entry in store.recent(100)}
        assert all(entry["actual"] is not None for entry in after.values())
        assert after[legacy[old[0]["id"]]]["actual"] == 0.25
        assert after[legacy[old[3]["id"]]]["actual"] == 0.25  # its shadow
        store.add_feedback("c-1", 0.75)
        assert after[legacy["c-1-shadow"]]["actual"] == 0.5
        assert stored_actual(store, legacy["c-1-shadow"]) == 0.75
        with pytest.raises(UnknownPredictionError):
            store.add_feedback("gone", 1.0)


def stored_actual(store: RecordStore, prediction_id: str) -> float | None:
    [entry] = [e for e in store.recent(100) if e["id"] == prediction_id]
    return entry["actual"]


def test_v0004_goes_back_to_one_row_per_instance(database_url: str) -> None:
    old = _old_rows()
    with RecordStore(database_url) as store:
        with store.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0003")
            connection.execute(old_predictions.insert(), old)
        store.migrate()
        store.write_batch([new_record(2, features=["MedInc"], inputs=[[1.0], [2.0]])])
        with store.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0003")
        with store.engine.connect() as connection:
            rows = connection.execute(sa.select(old_predictions)).mappings().all()
        by_id = {row["id"]: dict(row) for row in rows}
        assert len(by_id) == len(old) + 2
        for row in old:
            back = by_id[row["id"]]
            # SQLite gives back naive UTC.
            back["created_at"] = back["created_at"].replace(tzinfo=UTC)
            if back["feedback_at"] is not None:
                back["feedback_at"] = back["feedback_at"].replace(tzinfo=UTC)
            if row["shadow_of"] == "gone":
                assert back.pop("shadow_of") == "gone.0"
                row = {k: v for k, v in row.items() if k != "shadow_of"}
            assert back == row, row["id"]
        store.migrate()  # and forth again
        assert store.count() == len(old) + 2
