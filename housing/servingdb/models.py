"""The prediction record, the predictions table, and the conversions between them.

Every record the server builds must be storable: values that JSON or PostgreSQL cannot hold
(NaN, infinity, NUL characters) are cleaned on the way in, so one odd request can never
block a batch. Only records that make no sense at all (no id, no latency, no status) are
rejected with a ValueError.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class PredictionRecord(NamedTuple):
    """One predicted instance (or one failed request), as the server hands it over.

    A NamedTuple, not a dataclass: a 100-row request builds 100 of them on the request path,
    and a tuple is built in a third of the time of a frozen dataclass."""

    id: str  # prediction id (a UUID), one row per predicted instance
    request_id: str  # groups the instances of one request
    created_at: datetime  # UTC (a naive datetime is taken as UTC)
    model_name: str
    model_version: str
    protocol: str  # 'v1' | 'v2'
    inputs: dict[str, float] | None  # feature -> value; None if the request failed unparsed
    output: float | None
    latency_ms: float
    status: int  # HTTP status of the request
    error: str | None  # the error message of a failed request
    # Shadow predictions only: the id of the served prediction of the same instance (whose
    # feedback this row shares). None for every prediction that answered a request.
    shadow_of: str | None = None


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already (SQLite returns those)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back as aware UTC datetimes."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        # SQLite keeps text without an offset; naive UTC text sorts chronologically.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


# JSON, not JSONB: JSONB rewrites numbers (3.602879701896397e+16 comes back as the int
# 36028797018963970, a different value); json keeps the text, so floats round-trip exactly.
JSON_TYPE = sa.JSON(none_as_null=True)

# Partial indexes: only rows with feedback enter them, so they cost nothing at insert time.
LABELLED_WHERE = sa.text("actual IS NOT NULL")
SHADOW_WHERE = sa.text("shadow_of IS NOT NULL")

metadata = sa.MetaData()

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("request_id", sa.String(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("model_name", sa.String(), nullable=False),
    sa.Column("model_version", sa.String(), nullable=False),
    sa.Column("protocol", sa.String(), nullable=False),
    sa.Column("inputs", JSON_TYPE, nullable=True),
    sa.Column("output", sa.Float(), nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("actual", sa.Float(), nullable=True),
    sa.Column("feedback_at", UTCDateTime(), nullable=True),
    # A challenger's shadow prediction: the id of the served prediction it shadows.
    sa.Column("shadow_of", sa.String(), nullable=True),
    # recent(): newest first.
    sa.Index("ix_predictions_created_at", "created_at"),
    # Per-version queries (drift, summaries by version).
    sa.Index("ix_predictions_model_version_created_at", "model_version", "created_at"),
    # labelled(version) and labelled(None): newest predictions that have feedback.
    sa.Index(
        "ix_predictions_labelled",
        "model_version",
        "created_at",
        sqlite_where=LABELLED_WHERE,
        postgresql_where=LABELLED_WHERE,
    ),
    sa.Index(
        "ix_predictions_labelled_created_at",
        "created_at",
        sqlite_where=LABELLED_WHERE,
        postgresql_where=LABELLED_WHERE,
    ),
    # Feedback for a served prediction reaches its shadows; only shadow rows enter it.
    sa.Index(
        "ix_predictions_shadow_of",
        "shadow_of",
        sqlite_where=SHADOW_WHERE,
        postgresql_where=SHADOW_WHERE,
    ),
)


# Retraining state (housing/servingdb/retrain.py): the policy, every decision, the lease.
retrain_config = sa.Table(
    "retrain_config",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("policy", JSON_TYPE, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

retrain_decisions = sa.Table(
    "retrain_decisions",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("decided_at", UTCDateTime(), nullable=False),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("forced", sa.Boolean(), nullable=False),
    sa.Column("go", sa.Boolean(), nullable=False),
    sa.Column("triggers", JSON_TYPE, nullable=False),
    sa.Column("reasons", JSON_TYPE, nullable=False),
    sa.Column("signals", JSON_TYPE, nullable=False),
    sa.Column("policy", JSON_TYPE, nullable=False),
    # skipped | already_running | running | promoted | not_promoted | failed | abandoned
    sa.Column("outcome", sa.String(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("model_version", sa.String(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Index("ix_retrain_decisions_decided_at", "decided_at"),
)

retrain_lease = sa.Table(
    "retrain_lease",
    metadata,
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("holder", sa.String(), nullable=False),
    sa.Column("acquired_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("decision_id", sa.Integer(), nullable=True),
)


def clean_text(value: object) -> str:
    """Text PostgreSQL accepts: NUL characters are dropped."""
    text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "") if "\x00" in text else text


def finite_or_none(value: object) -> float | None:
    if type(value) is float:  # the common case, without the slower ABC checks below
        return value if math.isfinite(value) else None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def json_safe(value: Any) -> Any:
    """`value` as strict JSON: non-finite numbers become null, unknown objects their text."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | str):
        return clean_text(value) if isinstance(value, str) else value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return finite_or_none(value)
    if isinstance(value, Mapping):
        return {clean_text(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return clean_text(value)


def _required_text(record: PredictionRecord, field: str) -> str:
    value = getattr(record, field)
    if value is None:
        raise ValueError(f"prediction record {record.id!r}: {field} is missing")
    text = clean_text(value)
    if field in ("id", "request_id") and not text:
        raise ValueError(f"prediction record: {field} is empty")
    return text


def to_row(record: PredictionRecord) -> dict[str, Any]:
    """Column values for `record`; ValueError if it cannot describe a prediction at all."""
    if not isinstance(record, PredictionRecord):
        raise ValueError(f"expected a PredictionRecord, got {type(record).__name__}")
    if not isinstance(record.created_at, datetime):
        raise ValueError(f"prediction record {record.id!r}: created_at is not a datetime")
    latency = finite_or_none(record.latency_ms)
    if latency is None:
        raise ValueError(f"prediction record {record.id!r}: latency_ms must be a finite number")
    status = record.status
    if not isinstance(status, numbers.Integral) or isinstance(status, bool):
        raise ValueError(f"prediction record {record.id!r}: status must be an integer")
    if not 100 <= int(status) <= 599:
        raise ValueError(f"prediction record {record.id!r}: status {status} is not HTTP")
    if record.output is not None and not isinstance(record.output, numbers.Real):
        raise ValueError(f"prediction record {record.id!r}: output must be a number")
    return {
        "id": _required_text(record, "id"),
        "request_id": _required_text(record, "request_id"),
        "created_at": as_utc(record.created_at),
        "model_name": _required_text(record, "model_name"),
        "model_version": _required_text(record, "model_version"),
        "protocol": _required_text(record, "protocol"),
        "inputs": None if record.inputs is None else json_safe(record.inputs),
        "output": finite_or_none(record.output),
        "latency_ms": latency,
        "status": int(status),
        "error": None if record.error is None else clean_text(record.error),
        "shadow_of": None if record.shadow_of is None else clean_text(record.shadow_of),
    }


# Columns of an insert, in the order of `insert_params`.
INSERT_COLUMNS = (
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
    "shadow_of",
)


def insert_params(
    record: PredictionRecord, timestamp: Callable[[datetime], object]
) -> tuple[Any, ...]:
    """DB-API parameters (INSERT_COLUMNS order) of `record`, the same values `to_row` gives
    as SQLAlchemy would bind them; ValueError as `to_row`.

    The records the server builds take a fast path (~2 us: no per-column type processing,
    inputs encoded by orjson, which writes NaN and infinities as null like `json_safe`); any
    other record goes through `to_row`. `timestamp` converts created_at to its bound value.
    """
    (rid, request_id, created, name, version, protocol, inputs, output, latency, status,
     error, shadow_of) = record  # fmt: skip
    if (
        type(record) is PredictionRecord
        and type(rid) is str
        and type(request_id) is str
        and type(name) is str
        and type(version) is str
        and type(protocol) is str
        and rid
        and request_id
        and "\x00"
        not in f"{rid}{request_id}{name}{version}{protocol}{error or ''}{shadow_of or ''}"
        and type(created) is datetime
        and created.tzinfo is UTC
        and type(latency) is float
        and math.isfinite(latency)
        and type(status) is int
        and 100 <= status <= 599
        and (output is None or (type(output) is float and math.isfinite(output)))
        and (error is None or type(error) is str)
        and (shadow_of is None or type(shadow_of) is str)
        and (inputs is None or type(inputs) is dict)
    ):
        try:
            encoded = None if inputs is None else orjson.dumps(inputs).decode()
        except TypeError:  # keys that are not text: the careful path
            pass
        else:
            return (rid, request_id, timestamp(created), name, version, protocol, encoded,
                    output, latency, status, error, shadow_of)  # fmt: skip
    row = to_row(record)
    inputs_json = row["inputs"]
    row["inputs"] = None if inputs_json is None else compact_json(inputs_json)
    row["created_at"] = timestamp(row["created_at"])
    return tuple(row[column] for column in INSERT_COLUMNS)


def compact_json(value: Any) -> str:
    """Strict, compact JSON, the one form the log stores and spills: NaN and Infinity refused
    (PostgreSQL and other parsers cannot read them), no spaces (orjson's form, so the fast
    insert path and this one store the same text)."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def sqlite_timestamp(value: datetime) -> str:
    """created_at as SQLAlchemy's SQLite DateTime stores a naive UTC datetime."""
    return as_utc(value).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def row_to_dict(row: sa.Row[Any]) -> dict[str, Any]:
    """A stored prediction as a JSON-ready dict (timestamps as ISO 8601 UTC)."""
    data = dict(row._mapping)
    data["created_at"] = _iso(data["created_at"])
    data["feedback_at"] = _iso(data["feedback_at"])
    return data


# Fields added after the first spill files were written: absent from those, None.
OPTIONAL_FIELDS = frozenset({"shadow_of"})


def record_to_json(record: PredictionRecord) -> dict[str, Any]:
    """A faithful, strict-JSON copy of `record` for the spill files (no validation here)."""
    data: dict[str, Any] = {
        name: json_safe(getattr(record, name)) for name in PredictionRecord._fields
    }
    if isinstance(record.created_at, datetime):
        data["created_at"] = record.created_at.isoformat()
    return data


def record_from_json(data: Mapping[str, Any]) -> PredictionRecord:
    """Inverse of `record_to_json`; KeyError/ValueError/TypeError for a line that is not one."""
    fields: dict[str, Any] = {
        name: data[name] if name not in OPTIONAL_FIELDS else data.get(name)
        for name in PredictionRecord._fields
    }
    fields["created_at"] = datetime.fromisoformat(fields["created_at"])
    return PredictionRecord(**fields)
