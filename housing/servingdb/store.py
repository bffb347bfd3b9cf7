"""RecordStore: the request log and its feedback, in SQLite (embedded) or PostgreSQL."""

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
from sqlalchemy.dialects import postgresql, sqlite
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
    RequestRecord,
    as_utc,
    compact_json,
    entries_of,
    insert_params,
    legacy_prediction_ids,
    log_entries,
    parse_prediction_id,
    prediction_feedback,
    prediction_id_of,
    request_log,
    sqlite_timestamp,
)
from housing.servingdb.summary import build_summary
from housing.urls import sqlite_file

MAX_LIMIT = 10_000
# Key of the PostgreSQL advisory lock that serializes replicas migrating at the same time.
_MIGRATION_LOCK = 0x7072656469637473


class RecordStore:
    """Request rows (each with its instances) and the feedback on their predictions.
    Thread-safe: one engine, a pool of connections.

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
            f"INSERT INTO {request_log.name} ({columns}) VALUES ({markers}) "  # noqa: S608
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

    def write_batch(self, records: Sequence[RequestRecord]) -> None:
        """Insert `records` (one row per request) in one transaction; ids already stored are
        skipped. ValueError (nothing written) if a record cannot describe a request at all.
        """
        rows: dict[str, tuple[Any, ...]] = {}
        for record in records:
            params = insert_params(record, self._timestamp)
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
        now = datetime.now(UTC)
        with _translate_errors(), self.engine.connect() as connection:
            # Reads, then writes: SQLite's write lock up front, or a commit of the writer
            # thread in between would fail the upgrade from reader to writer at once.
            connection.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            with connection.begin():
                self._add_feedback(connection, prediction_id, value, now)

    def _add_feedback(
        self, connection: Connection, prediction_id: str, value: float, now: datetime
    ) -> None:
        found = _find_prediction(connection, prediction_id)
        if found is None:
            raise UnknownPredictionError(prediction_id)
        served, index = found
        rows = [(served, index)]
        # Shadows of the whole request share its instance order; a migrated shadow of
        # one prediction names that prediction.
        canonical = prediction_id_of(served["id"], index)
        shadows = sa.select(*_FEEDBACK_SOURCE).where(
            request_log.c.shadow_of.in_([served["id"], canonical])
        )
        for shadow in connection.execute(shadows).mappings():
            rows.append((shadow, index if shadow["shadow_of"] == served["id"] else 0))
        feedback = [
            _feedback_row(row, at, value, now)
            for row, at in rows
            if at < log_entries(row["instances"])
        ]
        connection.execute(self._upsert_feedback(), feedback)

    def _upsert_feedback(self) -> sa.Insert:
        insert = (postgresql if self.dialect == "postgresql" else sqlite).insert
        statement = insert(prediction_feedback)
        changed = {name: statement.excluded[name] for name in ("actual", "feedback_at")}
        return statement.on_conflict_do_update(
            index_elements=[prediction_feedback.c.prediction_id], set_=changed
        )

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` predictions (one entry per instance, one per failed request),
        newest first, as JSON-ready dicts."""
        limit = _check_limit(limit, "limit")
        newest = (
            sa.select(request_log.c.id, request_log.c.instances)
            .order_by(request_log.c.created_at.desc())
            .limit(limit)
        )
        with _translate_errors(), self.engine.connect() as connection:
            # Pick the rows from their sizes first: their arrays are read only for those.
            wanted = _fill(connection.execute(newest).all(), limit)
            if not wanted:
                return []
            rows = {
                row["id"]: row
                for row in connection.execute(
                    sa.select(request_log).where(request_log.c.id.in_(list(wanted)))
                ).mappings()
            }
            feedback = {
                pid: (actual, at)
                for pid, actual, at in connection.execute(
                    sa.select(
                        prediction_feedback.c.prediction_id,
                        prediction_feedback.c.actual,
                        prediction_feedback.c.feedback_at,
                    ).where(prediction_feedback.c.log_id.in_(list(wanted)))
                )
            }
        return [
            entry
            for row_id, take in wanted.items()
            if row_id in rows
            for entry in entries_of(rows[row_id], feedback, take)
        ]

    def summary(self, latency_window: int = MAX_LIMIT) -> dict[str, Any]:
        """Counts over all predictions (ok = 2xx), success rate, and latency p50/p95/p99 (ms)
        over the newest `latency_window` predictions; overall and by protocol. A request's
        latency counts once per instance, as each instance waited for it. Shadow
        predictions answered nobody: they are not counted."""
        latency_window = _check_limit(latency_window, "latency_window")
        entries = _entries_sql()
        ok = sa.case((request_log.c.status.between(200, 299), entries), else_=0)
        served = request_log.c.shadow_of.is_(None)
        counts = (
            sa.select(
                request_log.c.protocol,
                sa.func.coalesce(sa.func.sum(entries), 0),
                sa.func.coalesce(sa.func.sum(ok), 0),
            )
            .where(served)
            .group_by(request_log.c.protocol)
        )
        latencies = (
            sa.select(request_log.c.protocol, request_log.c.latency_ms, request_log.c.instances)
            .where(served)
            .order_by(request_log.c.created_at.desc())
            .limit(latency_window)
        )
        with _translate_errors(), self.engine.connect() as connection:
            count_rows = [(p, int(n), int(n_ok)) for p, n, n_ok in connection.execute(counts)]
            latency_rows: list[tuple[str, float]] = []
            for protocol, latency, instances in connection.execute(latencies):
                room = latency_window - len(latency_rows)
                if room <= 0:
                    break
                latency_rows += [(protocol, float(latency))] * min(log_entries(instances), room)
        return build_summary(count_rows, latency_rows)

    def count(self) -> int:
        """Predictions in the log (an instance each, a failed request one)."""
        with _translate_errors(), self.engine.connect() as connection:
            total = connection.scalar(sa.select(sa.func.sum(_entries_sql())))
        return int(total or 0)

    def labelled(
        self, model_version: str | None = None, limit: int = 1000
    ) -> list[tuple[float, float]]:
        """(output, actual) of the newest predictions that have feedback, newest first;
        only those of `model_version` unless it is None."""
        f = prediction_feedback
        statement = sa.select(f.c.output, f.c.actual).where(f.c.output.is_not(None))
        if model_version is not None:
            statement = statement.where(f.c.model_version == model_version)
        statement = statement.order_by(f.c.created_at.desc()).limit(_check_limit(limit, "limit"))
        with _translate_errors(), self.engine.connect() as connection:
            return [(float(out), float(act)) for out, act in connection.execute(statement)]

    def coverage(self, model_version: str, window: int = 1000) -> tuple[int, int]:
        """(predictions, of which with feedback) among the newest `window` successful
        predictions of `model_version` (its shadow predictions included)."""
        window = _check_limit(window, "window")
        newest = (
            sa.select(request_log.c.id, request_log.c.instances)
            .where(request_log.c.model_version == model_version, request_log.c.instances > 0)
            .order_by(request_log.c.created_at.desc())
            .limit(window)
        )
        with _translate_errors(), self.engine.connect() as connection:
            sizes = connection.execute(newest).all()
            wanted = _fill(sizes, window)
            if not wanted:
                return 0, 0
            labelled = connection.execute(
                sa.select(prediction_feedback.c.log_id, prediction_feedback.c.instance).where(
                    prediction_feedback.c.log_id.in_(list(wanted))
                )
            ).all()
        # The window holds the last `take` instances of its oldest row (newest first).
        first = {row_id: size - wanted[row_id] for row_id, size in sizes if row_id in wanted}
        covered = sum(1 for log_id, instance in labelled if instance >= first[log_id])
        return sum(wanted.values()), covered

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


def _entries_sql() -> sa.ColumnElement[int]:
    """`log_entries(instances)` in SQL."""
    return sa.case((request_log.c.instances > 0, request_log.c.instances), else_=1)


def _fill(sizes: Sequence[tuple[str, int]], limit: int) -> dict[str, int]:
    """From (row id, instances) newest first: how many entries of each row (newest first)
    make up the newest `limit` predictions, in that order."""
    wanted: dict[str, int] = {}
    room = limit
    for row_id, instances in sizes:
        if room <= 0:
            break
        take = min(log_entries(instances), room)
        wanted[row_id] = take
        room -= take
    return wanted


# What a feedback row copies from the request row of its prediction.
_FEEDBACK_SOURCE = (
    request_log.c.id,
    request_log.c.model_version,
    request_log.c.created_at,
    request_log.c.outputs,
    request_log.c.instances,
    request_log.c.shadow_of,
)


def _find_prediction(connection: Connection, pid: str) -> tuple[sa.RowMapping, int] | None:
    """The request row and instance index of prediction `pid`: "<row id>.<index>", or an id
    from before the request log (the legacy table), or the bare row id of a one-instance
    request (replayed from a spill file of that time)."""
    parsed = parse_prediction_id(pid)
    if parsed is not None:
        row_id, index = parsed
        row = _request_row(connection, row_id)
        if row is not None and index < log_entries(row["instances"]):
            return row, index
    legacy = legacy_prediction_ids
    mapped = connection.execute(
        sa.select(legacy.c.log_id, legacy.c.instance).where(legacy.c.id == pid)
    ).first()
    if mapped is not None:
        row = _request_row(connection, mapped.log_id)
        return None if row is None else (row, mapped.instance)
    row = _request_row(connection, pid)
    if row is not None and log_entries(row["instances"]) == 1:
        return row, 0
    return None


def _request_row(connection: Connection, row_id: str) -> sa.RowMapping | None:
    statement = sa.select(*_FEEDBACK_SOURCE).where(request_log.c.id == row_id)
    return connection.execute(statement).mappings().first()


def _feedback_row(row: sa.RowMapping, index: int, actual: float, now: datetime) -> dict[str, Any]:
    outputs = row["outputs"]
    output = outputs[index] if outputs is not None and index < len(outputs) else None
    return {
        "prediction_id": prediction_id_of(row["id"], index),
        "log_id": row["id"],
        "instance": index,
        "model_version": row["model_version"],
        "created_at": row["created_at"],
        "output": output,
        "actual": actual,
        "feedback_at": now,
    }


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
