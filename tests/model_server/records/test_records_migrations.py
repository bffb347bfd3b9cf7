"""The schema comes from alembic migrations shipped inside the package, on both databases."""

from __future__ import annotations

import threading
from fnmatch import fnmatch
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from housing.servingdb import RecordStore
from housing.servingdb.migrations import SCRIPT_LOCATION, VERSION_TABLE, alembic_config
from housing.servingdb.models import metadata

# What pyproject ships besides modules: [tool.setuptools.package-data] "*".
PACKAGE_DATA = ("*.json", "*.ini", "*.mako")


def test_migrate_creates_the_table_its_indexes_and_our_version_table(database_url: str) -> None:
    with RecordStore(database_url) as store:
        store.migrate()
        store.migrate()  # at head already: nothing to do
        inspector = sa.inspect(store.engine)
        assert {"predictions", VERSION_TABLE} <= set(inspector.get_table_names())
        assert "alembic_version" not in inspector.get_table_names()
        columns = {c["name"]: c for c in inspector.get_columns("predictions")}
        assert list(columns) == [
            "id",
            "request_id",
            "created_at",
            "model_name",
            "model_version",
            "protocol",
            "inputs",
            "output",
            "latency_ms",
            "status",
            "error",
            "actual",
            "feedback_at",
            "shadow_of",
        ]
        assert columns["actual"]["nullable"] and columns["feedback_at"]["nullable"]
        assert not columns["created_at"]["nullable"]
        assert inspector.get_pk_constraint("predictions")["constrained_columns"] == ["id"]
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("predictions")}
        assert indexes == {
            "ix_predictions_created_at": ["created_at"],
            "ix_predictions_model_version_created_at": ["model_version", "created_at"],
            "ix_predictions_labelled": ["model_version", "created_at"],
            "ix_predictions_labelled_created_at": ["created_at"],
            "ix_predictions_shadow_of": ["shadow_of"],
        }
        with store.engine.connect() as connection:
            heads = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
            assert heads.scalars().all() == ["0003"]


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
        assert "predictions" not in sa.inspect(store.engine).get_table_names()
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
