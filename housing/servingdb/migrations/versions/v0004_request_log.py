"""The request log: one row per request (its instances as arrays), feedback in its own table.

The per-instance rows of `predictions` are grouped into request rows: the rows one request
wrote (same request id, time, version, protocol, latency, status and features) become one
row, instances ordered by their old ids (time-ordered UUIDs: the order they were answered
in). A shadow request keeps its link to the served request when its instances shadow
that request's instances one for one, in order (all the server ever wrote); any other shadow
row becomes a one-instance request naming the served prediction itself. Every old id still
takes feedback (legacy_prediction_ids), and existing feedback is carried over.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 13:00:00
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

SHADOW = sa.text("shadow_of IS NOT NULL")
LABELLED = sa.text("output IS NOT NULL")
OLD_LABELLED = sa.text("actual IS NOT NULL")
CHUNK = 2000  # rows read and written at a time

JSON = sa.JSON(none_as_null=True)
TIME = sa.DateTime(timezone=True)

_tables = sa.MetaData()
# The tables as this revision knows them (never the models: they move on).
predictions = sa.Table(
    "predictions",
    _tables,
    sa.Column("id", sa.String()),
    sa.Column("request_id", sa.String()),
    sa.Column("created_at", TIME),
    sa.Column("model_name", sa.String()),
    sa.Column("model_version", sa.String()),
    sa.Column("protocol", sa.String()),
    sa.Column("inputs", JSON),
    sa.Column("output", sa.Float()),
    sa.Column("latency_ms", sa.Float()),
    sa.Column("status", sa.Integer()),
    sa.Column("error", sa.Text()),
    sa.Column("actual", sa.Float()),
    sa.Column("feedback_at", TIME),
    sa.Column("shadow_of", sa.String()),
)
request_log = sa.Table(
    "request_log",
    _tables,
    sa.Column("id", sa.String()),
    sa.Column("request_id", sa.String()),
    sa.Column("created_at", TIME),
    sa.Column("model_name", sa.String()),
    sa.Column("model_version", sa.String()),
    sa.Column("protocol", sa.String()),
    sa.Column("features", JSON),
    sa.Column("inputs", JSON),
    sa.Column("outputs", JSON),
    sa.Column("instances", sa.Integer()),
    sa.Column("latency_ms", sa.Float()),
    sa.Column("status", sa.Integer()),
    sa.Column("error", sa.Text()),
    sa.Column("shadow_of", sa.String()),
)
feedback = sa.Table(
    "prediction_feedback",
    _tables,
    sa.Column("prediction_id", sa.String()),
    sa.Column("log_id", sa.String()),
    sa.Column("instance", sa.Integer()),
    sa.Column("model_version", sa.String()),
    sa.Column("created_at", TIME),
    sa.Column("output", sa.Float()),
    sa.Column("actual", sa.Float()),
    sa.Column("feedback_at", TIME),
)
legacy = sa.Table(
    "legacy_prediction_ids",
    _tables,
    sa.Column("id", sa.String()),
    sa.Column("log_id", sa.String()),
    sa.Column("instance", sa.Integer()),
)

# What the rows of one request share.
_REQUEST = ("request_id", "created_at", "model_name", "model_version", "protocol")
_SHARED = (*_REQUEST, "latency_ms", "status", "error")


def upgrade() -> None:
    op.create_table(
        "request_log",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("protocol", sa.String(), nullable=False),
        # json, not jsonb: jsonb rewrites numbers, json keeps floats exact.
        sa.Column("features", JSON, nullable=True),
        sa.Column("inputs", JSON, nullable=True),
        sa.Column("outputs", JSON, nullable=True),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("shadow_of", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "prediction_feedback",
        sa.Column("prediction_id", sa.String(), nullable=False),
        sa.Column("log_id", sa.String(), nullable=False),
        sa.Column("instance", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("output", sa.Float(), nullable=True),
        sa.Column("actual", sa.Float(), nullable=False),
        sa.Column("feedback_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("prediction_id"),
    )
    op.create_table(
        "legacy_prediction_ids",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("log_id", sa.String(), nullable=False),
        sa.Column("instance", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _move_to_requests(op.get_bind())
    # Indexes after the bulk copy: built once, not maintained row by row.
    op.create_index("ix_request_log_created_at", "request_log", ["created_at"])
    op.create_index(
        "ix_request_log_model_version_created_at", "request_log", ["model_version", "created_at"]
    )
    op.create_index(
        "ix_request_log_shadow_of",
        "request_log",
        ["shadow_of"],
        sqlite_where=SHADOW,
        postgresql_where=SHADOW,
    )
    op.create_index("ix_prediction_feedback_log_id", "prediction_feedback", ["log_id"])
    op.create_index(
        "ix_prediction_feedback_labelled",
        "prediction_feedback",
        ["model_version", "created_at"],
        sqlite_where=LABELLED,
        postgresql_where=LABELLED,
    )
    op.create_index(
        "ix_prediction_feedback_labelled_created_at",
        "prediction_feedback",
        ["created_at"],
        sqlite_where=LABELLED,
        postgresql_where=LABELLED,
    )
    op.drop_table("predictions")  # and its indexes


def downgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("protocol", sa.String(), nullable=False),
        sa.Column("inputs", JSON, nullable=True),
        sa.Column("output", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("actual", sa.Float(), nullable=True),
        sa.Column("feedback_at", TIME, nullable=True),
        sa.Column("shadow_of", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    _move_to_predictions(op.get_bind())
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index(
        "ix_predictions_model_version_created_at", "predictions", ["model_version", "created_at"]
    )
    for name, columns in (
        ("ix_predictions_labelled", ["model_version", "created_at"]),
        ("ix_predictions_labelled_created_at", ["created_at"]),
    ):
        op.create_index(
            name,
            "predictions",
            columns,
            sqlite_where=OLD_LABELLED,
            postgresql_where=OLD_LABELLED,
        )
    op.create_index(
        "ix_predictions_shadow_of",
        "predictions",
        ["shadow_of"],
        sqlite_where=SHADOW,
        postgresql_where=SHADOW,
    )
    op.drop_table("legacy_prediction_ids")
    op.drop_table("prediction_feedback")
    op.drop_table("request_log")


# -- upgrade: per-instance rows into request rows ---------------------------------------------


class _Batch:
    """Rows waiting to be inserted, flushed CHUNK at a time."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self.pending: dict[sa.Table, list[dict[str, Any]]] = {
            request_log: [],
            legacy: [],
            feedback: [],
        }

    def add(self, table: sa.Table, row: dict[str, Any]) -> None:
        rows = self.pending[table]
        rows.append(row)
        if len(rows) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        # Requests first: a flush leaves no feedback or legacy id pointing at nothing.
        for table, rows in self.pending.items():
            if rows:
                self.connection.execute(table.insert(), rows)
                rows.clear()


def _groups(connection: sa.Connection, shadows: bool) -> Iterator[list[sa.RowMapping]]:
    """The old rows (served or shadow), the instances of one request together."""
    where = predictions.c.shadow_of.is_not(None) if shadows else predictions.c.shadow_of.is_(None)
    order = [predictions.c[name] for name in _SHARED[:5]] + [predictions.c.id]
    statement = sa.select(predictions).where(where).order_by(*order)
    group: list[sa.RowMapping] = []
    key: tuple[Any, ...] | None = None
    # Streamed (a server-side cursor on PostgreSQL): the table may not fit in memory.
    streamed = statement.execution_options(yield_per=CHUNK)
    for row in connection.execute(streamed).mappings():
        row_key = _key(row)
        if group and (row_key is None or row_key != key):
            yield group
            group = []
        group.append(row)
        key = row_key
        if row_key is None:  # a row of its own
            yield group
            group = []
    if group:
        yield group


def _key(row: sa.RowMapping) -> tuple[Any, ...] | None:
    """What the rows of one successful request share; None for a row that stays alone
    (a failure, or inputs that are not an object of features)."""
    inputs = row["inputs"]
    if not 200 <= row["status"] <= 299 or not isinstance(inputs, dict):
        return None
    return (*(row[name] for name in _SHARED), tuple(inputs))


def _request_row(rows: list[sa.RowMapping], log_id: str, shadow_of: str | None) -> dict[str, Any]:
    first = rows[0]
    inputs = first["inputs"]
    features = list(inputs) if isinstance(inputs, dict) else None
    has_instances = features is not None or any(r["output"] is not None for r in rows)
    return {
        **{name: first[name] for name in _SHARED},
        "id": log_id,
        "features": features,
        "inputs": None if features is None else [list(r["inputs"].values()) for r in rows],
        "outputs": [r["output"] for r in rows] if has_instances else None,
        "instances": len(rows) if has_instances else 0,
        "shadow_of": shadow_of,
    }


def _add_request(
    batch: _Batch, rows: list[sa.RowMapping], shadow_of: str | None
) -> dict[str, tuple[str, int]]:
    """Queue the request row of `rows`, their old ids and their feedback; old id -> (row
    id, index)."""
    log_id = str(uuid.uuid4())
    batch.add(request_log, _request_row(rows, log_id, shadow_of))
    placed = {}
    for index, row in enumerate(rows):
        placed[row["id"]] = (log_id, index)
        batch.add(legacy, {"id": row["id"], "log_id": log_id, "instance": index})
        if row["actual"] is not None:
            batch.add(
                feedback,
                {
                    "prediction_id": f"{log_id}.{index}",
                    "log_id": log_id,
                    "instance": index,
                    "model_version": row["model_version"],
                    "created_at": row["created_at"],
                    "output": row["output"],
                    "actual": row["actual"],
                    "feedback_at": row["feedback_at"] or row["created_at"],
                },
            )
    return placed


def _placed(connection: sa.Connection, old_ids: list[str]) -> dict[str, tuple[str, int]]:
    """Where the served predictions `old_ids` went: old id -> (row id, index)."""
    statement = sa.select(legacy).where(legacy.c.id.in_(old_ids))
    return {r.id: (r.log_id, r.instance) for r in connection.execute(statement)}


def _move_to_requests(connection: sa.Connection) -> None:
    batch = _Batch(connection)
    for rows in _groups(connection, shadows=False):
        _add_request(batch, rows, None)
    batch.flush()  # the served requests' places, for their shadows
    for rows in _groups(connection, shadows=True):
        served = _placed(connection, sorted({r["shadow_of"] for r in rows}))
        rows = sorted(rows, key=lambda r: served.get(r["shadow_of"], ("", -1))[1])
        places = [served.get(r["shadow_of"]) for r in rows]
        log_ids = {place[0] for place in places if place is not None}
        if len(log_ids) == 1 and [place and place[1] for place in places] == list(range(len(rows))):
            _add_request(batch, rows, log_ids.pop())
            continue
        for row, place in zip(rows, places, strict=True):
            named = row["shadow_of"] if place is None else f"{place[0]}.{place[1]}"
            _add_request(batch, [row], named)
    batch.flush()


# -- downgrade: request rows back into per-instance rows --------------------------------------


def _move_to_predictions(connection: sa.Connection) -> None:
    old_ids = {(r.log_id, r.instance): r.id for r in connection.execute(sa.select(legacy))}
    actuals = {
        r.prediction_id: (r.actual, r.feedback_at) for r in connection.execute(sa.select(feedback))
    }

    def old_id(log_id: str, index: int) -> str:
        return old_ids.get((log_id, index), f"{log_id}.{index}")

    pending: list[dict[str, Any]] = []
    rows = connection.execute(sa.select(request_log).execution_options(yield_per=CHUNK))
    for row in rows.mappings():
        features, inputs, outputs = row["features"], row["inputs"], row["outputs"]
        shadow_of = row["shadow_of"]
        for index in range(max(row["instances"], 1)):
            actual, feedback_at = actuals.get(f"{row['id']}.{index}", (None, None))
            if shadow_of is None:
                shadow = None
            elif "." in shadow_of:  # the shadow of one prediction: "<row id>.<index>"
                served, _, at = shadow_of.rpartition(".")
                shadow = old_id(served, int(at)) if at.isdigit() else shadow_of
            else:
                shadow = old_id(shadow_of, index)
            pending.append(
                {
                    **{name: row[name] for name in _SHARED},
                    "id": old_id(row["id"], index),
                    "inputs": dict(zip(features, inputs[index], strict=False))
                    if features is not None and inputs is not None
                    else None,
                    "output": outputs[index] if outputs is not None else None,
                    "actual": actual,
                    "feedback_at": feedback_at,
                    "shadow_of": shadow,
                }
            )
        if len(pending) >= CHUNK:
            connection.execute(predictions.insert(), pending)
            pending.clear()
    if pending:
        connection.execute(predictions.insert(), pending)
