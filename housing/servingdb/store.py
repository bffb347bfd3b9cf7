"""RecordStore: the prediction log and its feedback, in SQLite (embedded) or PostgreSQL."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from housing.servingdb.errors import (
    InvalidFeedbackError,
    StoreUnavailableError,
    UnknownPredictionError,
    connection_failed,
)
from housing.servingdb.migrations import alembic_config
from housing.servingdb.models import (
    INSERT_COLUMNS,
    PredictionRecord,
    as_utc,
    compact_json,
    insert_params,
    predictions,
    row_to_dict,
    sqlite_timestamp,
)
from housing.servingdb.summary import build_summary
from housing.urls import sqlite_file

MAX_LIMIT = 10_000
# Key of the PostgreSQL advisory lock that serializes replicas migrating at the same time.
_MIGRATION_LOCK = 0x7072656469637473


class RecordStore:
    """Prediction rows and their feedback. Thread-safe: one engine, a pool of connections.

    Connection-level failures (database down, locked, unreachable) surface as
    StoreUnavailableError (503) from every method.
    """

    def __init__(
        self,
        database_url: str,
        *,
        busy_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        pool_size: int = 5,
    ) -> None:
        self.url = make_url(database_url)
        if self.url.drivername == "postgresql":
            # The bare scheme means psycopg2, which is not installed; psycopg 3 is.
            self.url = self.url.set(drivername="postgresql+psycopg")
        self.engine = _create_engine(self.url, busy_timeout, connect_timeout, pool_size)
        # Idempotent on id: a retried or replayed batch never duplicates rows (nor erases
        # feedback). Plain DB-API executemany: SQLAlchemy's per-column bind processing cost
        # ~30 us a row, more than the rest of a prediction.
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        columns, markers = ", ".join(INSERT_COLUMNS), ", ".join([marker] * len(INSERT_COLUMNS))
        self._insert_sql = (  # constants only
            f"INSERT INTO {predictions.name} ({columns}) VALUES ({markers}) "  # noqa: S608
            "ON CONFLICT (id) DO NOTHING"
        )
        self._timestamp: Callable[[datetime], object] = (
            sqlite_timestamp if self.dialect == "sqlite" else as_utc
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic upgrade head); safe to repeat and
        to run from several processes at once."""
        with _translate_errors(), self.engine.connect() as connection:
            # IMMEDIATE takes SQLite's write lock up front, so a second migrator waits.
            connection.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            with connection.begin():
                if self.dialect == "postgresql":
                    lock = sa.text("SELECT pg_advisory_xact_lock(:key)")
                    connection.execute(lock, {"key": _MIGRATION_LOCK})
                command.upgrade(alembic_config(connection), "head")

    def write_batch(self, records: Sequence[PredictionRecord]) -> None:
        """Insert `records` in one transaction; ids already stored are skipped.

        ValueError (nothing written) if a record cannot describe a prediction at all.
        """
        # The rows of one request share their created_at: convert each value once.
        converted: dict[datetime, object] = {}

        def timestamp(value: datetime) -> object:
            bound = converted.get(value)
            if bound is None:
                bound = converted[value] = self._timestamp(value)
            return bound

        rows: dict[str, tuple[Any, ...]] = {}
        for record in records:
            params = insert_params(record, timestamp)
            rows.setdefault(params[0], params)
        if not rows:
            return
        with _translate_errors(), self.engine.begin() as connection:
            connection.exec_driver_sql(self._insert_sql, list(rows.values()))

    def add_feedback(self, prediction_id: str, actual: float) -> None:
        """Record the true value of a prediction, and of the challenger's shadow predictions of
        the same instance. A second feedback for the same id replaces the first (latest wins;
        feedback_at says when it came)."""
        value = _feedback_value(actual)
        if not isinstance(prediction_id, str) or not prediction_id:
            raise InvalidFeedbackError("prediction id must be a non-empty string")
        if "\x00" in prediction_id:  # no stored id has one, and PostgreSQL would refuse it
            raise UnknownPredictionError(prediction_id)
        values = {"actual": value, "feedback_at": datetime.now(UTC)}
        served = sa.update(predictions).where(predictions.c.id == prediction_id).values(values)
        shadows = (
            sa.update(predictions).where(predictions.c.shadow_of == prediction_id).values(values)
        )
        with _translate_errors(), self.engine.begin() as connection:
            if connection.execute(served).rowcount == 0:
                raise UnknownPredictionError(prediction_id)
            connection.execute(shadows)

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` predictions, newest first, as JSON-ready dicts."""
        statement = (
            sa.select(predictions)
            .order_by(predictions.c.created_at.desc())
            .limit(_check_limit(limit, "limit"))
        )
        with _translate_errors(), self.engine.connect() as connection:
            return [row_to_dict(row) for row in connection.execute(statement)]

    def summary(self, latency_window: int = MAX_LIMIT) -> dict[str, Any]:
        """Counts over all predictions (ok = 2xx), success rate, and latency p50/p95/p99 (ms)
        over the newest `latency_window` predictions; overall and by protocol. Shadow
        predictions answered nobody: they are not counted."""
        ok = sa.case((predictions.c.status.between(200, 299), 1), else_=0)
        served = predictions.c.shadow_of.is_(None)
        counts = (
            sa.select(predictions.c.protocol, sa.func.count(), sa.func.coalesce(sa.func.sum(ok), 0))
            .where(served)
            .group_by(predictions.c.protocol)
        )
        latencies = (
            sa.select(predictions.c.protocol, predictions.c.latency_ms)
            .where(served)
            .order_by(predictions.c.created_at.desc())
            .limit(_check_limit(latency_window, "latency_window"))
        )
        with _translate_errors(), self.engine.connect() as connection:
            count_rows = [(p, int(n), int(n_ok)) for p, n, n_ok in connection.execute(counts)]
            latency_rows = [(p, float(v)) for p, v in connection.execute(latencies)]
        return build_summary(count_rows, latency_rows)

    def count(self) -> int:
        with _translate_errors(), self.engine.connect() as connection:
            return int(connection.scalar(sa.select(sa.func.count()).select_from(predictions)) or 0)

    def labelled(
        self, model_version: str | None = None, limit: int = 1000
    ) -> list[tuple[float, float]]:
        """(output, actual) of the newest predictions that have feedback, newest first;
        only those of `model_version` unless it is None."""
        statement = sa.select(predictions.c.output, predictions.c.actual).where(
            predictions.c.actual.is_not(None), predictions.c.output.is_not(None)
        )
        if model_version is not None:
            statement = statement.where(predictions.c.model_version == model_version)
        statement = statement.order_by(predictions.c.created_at.desc()).limit(
            _check_limit(limit, "limit")
        )
        with _translate_errors(), self.engine.connect() as connection:
            return [(float(out), float(act)) for out, act in connection.execute(statement)]

    def coverage(self, model_version: str, window: int = 1000) -> tuple[int, int]:
        """(predictions, of which with feedback) among the newest `window` successful
        predictions of `model_version` (its shadow predictions included)."""
        newest = (
            sa.select(predictions.c.actual)
            .where(predictions.c.model_version == model_version, predictions.c.output.is_not(None))
            .order_by(predictions.c.created_at.desc())
            .limit(_check_limit(window, "window"))
            .subquery()
        )
        statement = sa.select(sa.func.count(), sa.func.count(newest.c.actual))
        with _translate_errors(), self.engine.connect() as connection:
            predicted, labelled = connection.execute(statement).one()
        return int(predicted), int(labelled)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _feedback_value(actual: object) -> float:
    if isinstance(actual, bool) or not isinstance(actual, numbers.Real):
        raise InvalidFeedbackError(f"actual must be a number, got {type(actual).__name__}")
    value = float(actual)
    if not math.isfinite(value):
        raise InvalidFeedbackError(f"actual must be a finite number, got {value}")
    return value


def _check_limit(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        raise ValueError(f"{name} must be an integer from 0 to {MAX_LIMIT}, got {value!r}")
    return value


@contextmanager
def _translate_errors() -> Iterator[None]:
    """Connection-level failures become StoreUnavailableError; anything else passes."""
    try:
        yield
    except exc.SQLAlchemyError as error:
        if not connection_failed(error):
            raise
        raise StoreUnavailableError(f"prediction store unavailable: {_reason(error)}") from error


def _reason(error: exc.SQLAlchemyError) -> str:
    origin = getattr(error, "orig", None)
    return str(origin if origin is not None else error).strip().splitlines()[0]


def _create_engine(url: URL, busy_timeout: float, connect_timeout: float, pool_size: int) -> Engine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = sqlite_file(url.render_as_string(hide_password=False))
        if database is None:
            raise ValueError(
                "in-memory SQLite is not supported (each connection would see its own empty "
                "database); use a file: sqlite:///path/to/records.db"
            )
        database.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, json_serializer=compact_json, connect_args={"timeout": busy_timeout}
        )
        _configure_sqlite(engine, busy_timeout)
        return engine
    if backend == "postgresql":
        return sa.create_engine(
            url,
            json_serializer=compact_json,
            # After an outage, pooled connections are dead: test each before use.
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=connect_timeout,
            connect_args={
                "connect_timeout": max(2, math.ceil(connect_timeout)),
                # Notice a silently vanished server (no RST: a dead node, a cut network)
                # within seconds, instead of TCP's many minutes, idle or mid-write.
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
                "tcp_user_timeout": 30_000,
            },
        )
    raise ValueError(
        f"unsupported database {url.drivername!r}: use sqlite:///path.db "
        "or postgresql+psycopg://user@host:5432/db"
    )


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below): pysqlite's own handling would leave DDL
        # outside transactions, so a half-applied migration could stay behind.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: readers (recent, summary) never wait for the writer thread, nor it for them.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get("sqlite_begin", "BEGIN"))
