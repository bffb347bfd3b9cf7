"""The training job's logging: text lines or JSON lines (housing/logformat.py) on stderr, for
the job's own loggers and every library's, MLflow's included."""

from __future__ import annotations

import logging
import sys

from housing.logformat import JsonFormatter, LogFormat, mlflow_output_through_logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Chatty at INFO about their own internals ("Detected uv project", migrations, connections);
# the job's own progress stays readable. Their warnings still show.
QUIET_LOGGERS = ("mlflow", "alembic", "urllib3", "git")


def configure_logging(verbose: bool = False, log_format: LogFormat = "text") -> None:
    """One handler on the root logger, in `log_format`, at INFO (DEBUG if `verbose`)."""
    mlflow_output_through_logging()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if log_format == "json":
        logging.captureWarnings(True)  # a warning would otherwise be a bare line on stderr
