"""The server's logging: KServe's format for its loggers, uvicorn's and ours, or JSON lines
(housing/logformat.py), and the request context those JSON lines carry."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

from kserve import logging as kserve_logging
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from housing.logformat import (
    MODEL_VERSION,
    REQUEST_ID,
    JsonFormatter,
    LogFormat,
    mlflow_output_through_logging,
)
from model_server.errors import MODEL_VERSION_HEADER

_VERSION_HEADER = MODEL_VERSION_HEADER.lower().encode("latin-1")
# Loggers whose INFO is about their own internals, not the server's work.
QUIET_LOGGERS = ("mlflow", "alembic", "skl2onnx")


def configure_logging(level: str, access_log: bool = False, log_format: LogFormat = "text") -> None:
    """KServe's log configuration for its loggers, uvicorn's and ours, all at `level`;
    uvicorn's access log without a handler (no line, nothing built) unless `access_log`. With
    `json`, every handler writes JSON lines, the root logger too (other libraries' records),
    and Python warnings go through it (a warning would otherwise be a bare line on stderr)."""
    mlflow_output_through_logging()
    config = copy.deepcopy(kserve_logging.KSERVE_LOG_CONFIG)
    for name in ("kserve", "kserve.trace", "uvicorn", "uvicorn.error", "uvicorn.access"):
        config["loggers"][name]["level"] = level
    if not access_log:
        # No handler: uvicorn's protocol asks hasHandlers() once per connection and then skips
        # the line. A logger merely silenced still had the line's arguments built on every
        # request (the path quoted: ~8 us).
        config["loggers"]["uvicorn.access"] = {"handlers": [], "propagate": False}
    config["loggers"]["model_server"] = {"handlers": ["kserve"], "level": level, "propagate": False}
    for noisy in QUIET_LOGGERS:
        config["loggers"][noisy] = {"level": "WARNING"}
    if log_format == "json":
        json_formatter = {"()": f"{JsonFormatter.__module__}.{JsonFormatter.__qualname__}"}
        config["formatters"] = {name: json_formatter for name in config["formatters"]}
        config["root"] = {"handlers": ["kserve"], "level": "WARNING"}
        logging.captureWarnings(True)
    kserve_logging.configure_logging(config)


class RequestContext:
    """ASGI middleware that names the request (its X-Request-ID) and the model version that
    answers it (the version served when it arrived, then the X-Model-Version of the response)
    for the JSON log lines written while it is handled, uvicorn's access line included."""

    def __init__(self, app: ASGIApp, *, served_version: Callable[[], str | None]) -> None:
        self.app = app
        self.served_version = served_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        REQUEST_ID.set(request_id)
        MODEL_VERSION.set(self.served_version())

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", ()):
                    if name.lower() == _VERSION_HEADER:
                        MODEL_VERSION.set(value.decode("latin-1"))
                        break
            await send(message)

        await self.app(scope, receive, send_with_version)
