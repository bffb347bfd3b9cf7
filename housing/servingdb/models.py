"""The request record, the request log and feedback tables, and the conversions between them.

One row per request: its instances as arrays (inputs in feature order, outputs), each
instance's prediction id derived from the row's id (`prediction_id`). Feedback lives in its
own table, so a logged request is never rewritten.

Every record the server builds must be storable: values that JSON or PostgreSQL cannot hold
(NaN, infinity, NUL characters) are cleaned on the way in, so one odd request can never
block a batch. Only records that make no sense at all (no id, no latency, no status, arrays
of the wrong shape) are rejected with a ValueError.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class RequestRecord(NamedTuple):
    """One request (served, shadow or failed), as the server hands it over: one log row.

    `inputs` and `outputs` may be the request's own numpy arrays: they are converted in the
    writer thread, not on the request path, and must not be changed after submit()."""

    id: str  # the row's id (a UUIDv7), unique; instance i's prediction id is f"{id}.{i}"
    request_id: str  # the client's request id (x-request-id, v2 "id") or a generated one
    created_at: datetime  # UTC (a naive datetime is taken as UTC)
    model_name: str
    model_version: str
    protocol: str  # 'v1' | 'v2'
    features: Sequence[str] | None  # the names of the inputs' columns
    inputs: Any  # instances x features (array or lists); None if the request failed unparsed
    outputs: Any  # one prediction per instance (array or list); None if it failed
    latency_ms: float
    status: int  # HTTP status of the request
    error: str | None  # the error message of a failed request
    # A challenger's shadow request: the id of the served request whose instances it
    # predicted, in the same order (instance i shadows the served instance i). A shadow of a
    # single prediction (only from migrated rows) names that prediction id instead.
    shadow_of: str | None = None


def prediction_id_of(row_id: str, index: int) -> str:
    return f"{row_id}.{index}"


def prediction_ids(row_id: str, count: int) -> list[str]:
    """The prediction ids of a request's `count` instances."""
    return [f"{row_id}.{index}" for index in range(count)]


def parse_prediction_id(value: str) -> tuple[str, int] | None:
    """(row id, instance index) of a prediction id; None if it is not of that form (e.g. a
    prediction id from before the request log, looked up in `legacy_prediction_ids`)."""
    row_id, dot, index = value.rpartition(".")
    # Canonical decimal only: "x.01" is not "x.1", so one prediction has one id.
    if not dot or not row_id or not index.isascii() or not index.isdigit():
        return None
    if len(index) > 1 and index[0] == "0":
        return None
    return row_id, int(index)


def log_entries(instances: int) -> int:
    """Entries of /logs a row stands for: its instances, or one for a failed request."""
    return instances if instances > 0 else 1


def record_weight(record: RequestRecord) -> int:
    """Predictions a record stands for in the log (its instances; one for a failed request):
    the unit the writer's buffer, batches and counters are measured in, as before the request
    log. Never raises, whatever the record holds."""
    try:
        return log_entries(len(record.outputs)) if record.outputs is not None else 1
    except TypeError:
        return 1


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

SHADOW_WHERE = sa.text("shadow_of IS NOT NULL")
LABELLED_WHERE = sa.text("output IS NOT NULL")

metadata = sa.MetaData()

request_log = sa.Table(
    "request_log",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("request_id", sa.String(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("model_name", sa.String(), nullable=False),
    sa.Column("model_version", sa.String(), nullable=False),
    sa.Column("protocol", sa.String(), nullable=False),
    sa.Column("features", JSON_TYPE, nullable=True),  # ["MedInc", ...]
    sa.Column("inputs", JSON_TYPE, nullable=True),  # [[8.3, 41.0, ...], ...]
    sa.Column("outputs", JSON_TYPE, nullable=True),  # [4.526, ...]
    # len(outputs): the counts and windows read it without decoding the arrays.
    sa.Column("instances", sa.Integer(), nullable=False),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("shadow_of", sa.String(), nullable=True),
    # recent(), summary(): newest first.
    sa.Index("ix_request_log_created_at", "created_at"),
    # coverage(version): the newest requests of a version.
    sa.Index("ix_request_log_model_version_created_at", "model_version", "created_at"),
    # Feedback for a served prediction reaches its shadows; only shadow rows enter it.
    sa.Index(
        "ix_request_log_shadow_of",
        "shadow_of",
        sqlite_where=SHADOW_WHERE,
        postgresql_where=SHADOW_WHERE,
    ),
)

# The true value of a prediction, one row per prediction id (the latest feedback wins).
# The prediction's version, time and output are copied from its (never changing) request
# row, so that labelled() reads this small table alone, newest first from an index.
prediction_feedback = sa.Table(
    "prediction_feedback",
    metadata,
    sa.Column("prediction_id", sa.String(), primary_key=True),
    sa.Column("log_id", sa.String(), nullable=False),  # request_log.id
    sa.Column("instance", sa.Integer(), nullable=False),
    sa.Column("model_version", sa.String(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),  # the prediction's
    sa.Column("output", sa.Float(), nullable=True),  # None: a failed request's
    sa.Column("actual", sa.Float(), nullable=False),
    sa.Column("feedback_at", UTCDateTime(), nullable=False),
    sa.Index("ix_prediction_feedback_log_id", "log_id"),
    sa.Index(
        "ix_prediction_feedback_labelled",
        "model_version",
        "created_at",
        sqlite_where=LABELLED_WHERE,
        postgresql_where=LABELLED_WHERE,
    ),
    sa.Index(
        "ix_prediction_feedback_labelled_created_at",
        "created_at",
        sqlite_where=LABELLED_WHERE,
        postgresql_where=LABELLED_WHERE,
    ),
)

# Prediction ids handed out before the request log (one UUID per instance), still valid
# for feedback: written once by the migration, read only when an id is not "<row>.<i>".
legacy_prediction_ids = sa.Table(
    "legacy_prediction_ids",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("log_id", sa.String(), nullable=False),
    sa.Column("instance", sa.Integer(), nullable=False),
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
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return clean_text(value)


def _required_text(record: RequestRecord, field: str) -> str:
    value = getattr(record, field)
    if value is None:
        raise ValueError(f"request record {record.id!r}: {field} is missing")
    text = clean_text(value)
    if field in ("id", "request_id") and not text:
        raise ValueError(f"request record: {field} is empty")
    return text


def _sequence(value: object) -> list[Any] | None:
    """`value` as a list if it is an array or a list/tuple (text is not), else None."""
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim >= 1 else None
    return list(value) if isinstance(value, list | tuple) else None


def _features(record: RequestRecord) -> list[str] | None:
    if record.features is None:
        return None
    names = _sequence(record.features)
    if names is None:
        raise ValueError(f"request record {record.id!r}: features must be a list of names")
    return [clean_text(name) for name in names]


def _inputs(record: RequestRecord, features: list[str] | None) -> list[list[Any]] | None:
    if record.inputs is None:
        return None
    rows = _sequence(record.inputs)
    if rows is None or features is None:
        raise ValueError(f"request record {record.id!r}: inputs must be rows of the features")
    matrix = []
    for row in rows:
        values = _sequence(row)
        if values is None or len(values) != len(features):
            raise ValueError(
                f"request record {record.id!r}: every input row must have "
                f"{len(features)} values, one per feature"
            )
        matrix.append([json_safe(value) for value in values])
    return matrix


def _outputs(record: RequestRecord) -> list[float | None] | None:
    if record.outputs is None:
        return None
    values = _sequence(record.outputs)
    if values is None:
        raise ValueError(f"request record {record.id!r}: outputs must be a list of numbers")
    for value in values:
        if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)):
            raise ValueError(f"request record {record.id!r}: outputs must be numbers")
    return [finite_or_none(value) for value in values]


def to_row(record: RequestRecord) -> dict[str, Any]:
    """Column values for `record`; ValueError if it cannot describe a request at all."""
    if not isinstance(record, RequestRecord):
        raise ValueError(f"expected a RequestRecord, got {type(record).__name__}")
    if not isinstance(record.created_at, datetime):
        raise ValueError(f"request record {record.id!r}: created_at is not a datetime")
    latency = finite_or_none(record.latency_ms)
    if latency is None:
        raise ValueError(f"request record {record.id!r}: latency_ms must be a finite number")
    status = record.status
    if not isinstance(status, numbers.Integral) or isinstance(status, bool):
        raise ValueError(f"request record {record.id!r}: status must be an integer")
    if not 100 <= int(status) <= 599:
        raise ValueError(f"request record {record.id!r}: status {status} is not HTTP")
    features = _features(record)
    inputs = _inputs(record, features)
    outputs = _outputs(record)
    if inputs is not None and outputs is not None and len(inputs) != len(outputs):
        raise ValueError(
            f"request record {record.id!r}: {len(inputs)} input rows but {len(outputs)} outputs"
        )
    instances = len(outputs) if outputs is not None else len(inputs or ())
    return {
        "id": _required_text(record, "id"),
        "request_id": _required_text(record, "request_id"),
        "created_at": as_utc(record.created_at),
        "model_name": _required_text(record, "model_name"),
        "model_version": _required_text(record, "model_version"),
        "protocol": _required_text(record, "protocol"),
        "features": features,
        "inputs": inputs,
        "outputs": outputs,
        "instances": instances,
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
    "features",
    "inputs",
    "outputs",
    "instances",
    "latency_ms",
    "status",
    "error",
    "shadow_of",
)
_JSON_COLUMNS = ("features", "inputs", "outputs")
_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def _fast_arrays(
    features: object, inputs: object, outputs: object
) -> tuple[str | None, str | None, str | None, int] | None:
    """The JSON of a record's arrays as the server builds them (names, a C-contiguous float
    matrix, a float vector of as many rows), encoded by orjson in a few microseconds per
    100 instances (NaN and infinities become null, as `json_safe` makes them); None for
    anything else, which goes through `to_row`."""
    if inputs is None and outputs is None:
        return None if features is not None else (None, None, None, 0)
    if (
        type(inputs) is not np.ndarray
        or type(outputs) is not np.ndarray
        or type(features) not in (tuple, list)
        or inputs.dtype not in _FLOATS
        or outputs.dtype not in _FLOATS
        or inputs.ndim != 2
        or outputs.ndim != 1
        or inputs.shape != (outputs.shape[0], len(features))  # type: ignore[arg-type]
        or not inputs.flags.c_contiguous
        or any(type(name) is not str or "\x00" in name for name in features)  # type: ignore[attr-defined]
    ):
        return None
    # float32 values as the float64 the response gave (tolist()'s value, not float32's text).
    if inputs.dtype != np.float64:
        inputs = inputs.astype(np.float64)
    if outputs.dtype != np.float64:
        outputs = outputs.astype(np.float64)
    option = orjson.OPT_SERIALIZE_NUMPY
    return (
        orjson.dumps(list(features)).decode(),  # type: ignore[call-overload]
        orjson.dumps(inputs, option=option).decode(),
        orjson.dumps(outputs, option=option).decode(),
        int(outputs.shape[0]),
    )


def insert_params(
    record: RequestRecord, timestamp: Callable[[datetime], object]
) -> tuple[Any, ...]:
    """DB-API parameters (INSERT_COLUMNS order) of `record`, the same values `to_row` gives
    as SQLAlchemy would bind them; ValueError as `to_row`.

    The records the server builds take a fast path (no per-column type processing, no
    per-instance Python objects: the arrays are encoded by orjson); any other record goes
    through `to_row`. `timestamp` converts created_at to its bound value.
    """
    (rid, request_id, created, name, version, protocol, features, inputs, outputs, latency,
     status, error, shadow_of) = record  # fmt: skip
    if (
        type(record) is RequestRecord
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
        and (error is None or type(error) is str)
        and (shadow_of is None or type(shadow_of) is str)
    ):
        arrays = _fast_arrays(features, inputs, outputs)
        if arrays is not None:
            names, matrix, values, instances = arrays
            return (rid, request_id, timestamp(created), name, version, protocol, names,
                    matrix, values, instances, latency, status, error, shadow_of)  # fmt: skip
    row = to_row(record)
    for column in _JSON_COLUMNS:
        value = row[column]
        row[column] = None if value is None else compact_json(value)
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


def iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def entries_of(
    row: Mapping[str, Any] | sa.RowMapping,
    feedback: Mapping[str, tuple[float, datetime]],
    take: int | None = None,
) -> list[dict[str, Any]]:
    """The /logs entries of a stored request row (JSON arrays decoded): one per instance, the
    last instance first (newest first, as the rows), one for a failed request; at most
    `take`. `feedback` maps prediction ids to (actual, feedback_at)."""
    row_id, features, inputs, outputs = row["id"], row["features"], row["inputs"], row["outputs"]
    shadow_of = row["shadow_of"]
    single_shadow = shadow_of is not None and parse_prediction_id(shadow_of) is not None
    created_at = iso(row["created_at"])
    count = log_entries(row["instances"])
    indexes = range(count - 1, -1, -1)[:take]
    entries = []
    for index in indexes:
        pid = prediction_id_of(row_id, index)
        actual, feedback_at = feedback.get(pid, (None, None))
        has_inputs = inputs is not None and features is not None and index < len(inputs)
        entries.append(
            {
                "id": pid,
                "request_id": row["request_id"],
                "created_at": created_at,
                "model_name": row["model_name"],
                "model_version": row["model_version"],
                "protocol": row["protocol"],
                "inputs": dict(zip(features, inputs[index], strict=False)) if has_inputs else None,
                "output": outputs[index] if outputs is not None and index < len(outputs) else None,
                "latency_ms": row["latency_ms"],
                "status": row["status"],
                "error": row["error"],
                "actual": actual,
                "feedback_at": iso(feedback_at),
                "shadow_of": None
                if shadow_of is None
                else shadow_of
                if single_shadow
                else prediction_id_of(shadow_of, index),
            }
        )
    return entries


def record_to_json(record: RequestRecord) -> dict[str, Any]:
    """A faithful, strict-JSON copy of `record` for the spill files (no validation here)."""
    data: dict[str, Any] = {
        name: json_safe(getattr(record, name)) for name in RequestRecord._fields
    }
    if isinstance(record.created_at, datetime):
        data["created_at"] = record.created_at.isoformat()
    return data


def record_from_json(data: Mapping[str, Any]) -> RequestRecord:
    """Inverse of `record_to_json`; KeyError/ValueError/TypeError for a line that is not one.
    A line of the spill files from before the request log (one prediction, "output") becomes
    a one-instance request whose row id is that prediction's id, still valid for feedback."""
    if "output" in data and "outputs" not in data:
        return _legacy_record(data)
    fields: dict[str, Any] = {
        name: data[name] if name != "shadow_of" else data.get(name)
        for name in RequestRecord._fields
    }
    fields["created_at"] = datetime.fromisoformat(fields["created_at"])
    return RequestRecord(**fields)


def _legacy_record(data: Mapping[str, Any]) -> RequestRecord:
    inputs = data["inputs"]
    if inputs is not None and not isinstance(inputs, Mapping):
        raise TypeError("inputs of a prediction record must be an object")
    output = data["output"]
    failed = inputs is None and output is None
    return RequestRecord(
        id=data["id"],
        request_id=data["request_id"],
        created_at=datetime.fromisoformat(data["created_at"]),
        model_name=data["model_name"],
        model_version=data["model_version"],
        protocol=data["protocol"],
        features=None if inputs is None else list(inputs),
        inputs=None if inputs is None else [list(inputs.values())],
        outputs=None if failed else [output],
        latency_ms=data["latency_ms"],
        status=data["status"],
        error=data["error"],
        shadow_of=data.get("shadow_of"),
    )
