"""Log formats shared by the model server and the training job: text (the default) or JSON,
one object per line, for a cluster's log pipeline.

A JSON line carries time (UTC, ISO 8601), level, logger and message, and the model version and
request id when the code logging it runs inside a request (context variables set by the
server's middleware); an exception's traceback is the `exception` field of the same line.
"""

from __future__ import annotations

import json
import logging
import os
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, get_args

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
MODEL_VERSION: ContextVar[str | None] = ContextVar("model_version", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message or traceback are
    escaped by JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        version = MODEL_VERSION.get()
        if version is not None:
            entry["model_version"] = version
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def parse_log_format(value: object) -> object:
    """The setting's value, lower-cased; ValueError names the choices (pydantic names the
    variable)."""
    if not isinstance(value, str):
        return value
    choice = value.strip().lower()
    if choice not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    return choice


def mlflow_output_through_logging() -> None:
    """Before mlflow is imported, and only where the user did not say otherwise: MLflow leaves
    its loggers to the application's configuration (importing it would give them a handler and
    format of its own and reset their levels: its INFO lines, "Detected uv project", in every
    command), and draws no progress bar when it downloads artifacts (carriage returns on
    stderr, neither a log line nor JSON)."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
