"""Errors of the server: one root that carries its HTTP status, and the one handler for all.

Bad input is always a 4xx that names the instance and the feature; only our own bugs are 5xx.
KServe's and FastAPI's own exceptions are translated into this hierarchy so that every error
leaves the server in the same shape: {"error": message, "details": [...]}.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

from housing.servingdb import RecordsError

log = logging.getLogger(__name__)

# A message lists this many problems; the rest are counted.
MAX_LISTED_PROBLEMS = 10
MODEL_VERSION_HEADER = "X-Model-Version"
# Control characters and lone surrogates (a request's keys and names are quoted in messages):
# written escaped, so that a message is text any encoder, log or database takes (UTF-8 has no
# surrogates, PostgreSQL refuses NUL).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def printable(text: str) -> str:
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one value of a request."""

    message: str
    instance: int | None = None
    feature: str | None = None

    def __str__(self) -> str:
        where = []
        if self.instance is not None:
            where.append(f"instance {self.instance}")
        if self.feature is not None:
            where.append(f"feature '{self.feature}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def as_dict(self) -> dict[str, Any]:
        feature = None if self.feature is None else printable(self.feature)
        return {"instance": self.instance, "feature": feature, "message": printable(self.message)}


class ErrorDetail(BaseModel):
    """One problem of a refused request (the OpenAPI document's view of `Problem`)."""

    instance: int | None = Field(description="index of the instance, if the problem is in one")
    feature: str | None = Field(description="the feature (or input, field), if known")
    message: str


class ErrorBody(BaseModel):
    """The body of every error response of the server."""

    error: str = Field(description="what is wrong: names the instance and feature where known")
    details: list[ErrorDetail] | None = Field(
        default=None, description="each problem on its own, when the request had several"
    )


class ModelServerError(Exception):
    """Root of the server's errors; `status_code` is the HTTP status of the response."""

    status_code: int = 500

    def __init__(
        self, message: str, problems: Sequence[Problem] = (), *, status_code: int | None = None
    ) -> None:
        message = printable(message)
        super().__init__(message)
        self.message = message
        self.problems = tuple(problems)
        if status_code is not None:
            self.status_code = status_code
        # Set by the model when it knows which version refused the request.
        self.model_version: str | None = None
        # Response headers the error needs (e.g. Allow on a 405).
        self.headers: dict[str, str] = {}


class BadRequestError(ModelServerError):
    status_code = 400


class InvalidInstancesError(BadRequestError):
    """Values that the model's signature or feature profile rules out."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        listed = "; ".join(str(p) for p in problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        super().__init__(listed + (f" (and {more} more)" if more > 0 else ""), problems)


class UnprocessableEntityError(ModelServerError):
    status_code = 422


class NotFoundError(ModelServerError):
    status_code = 404


class ConflictError(ModelServerError):
    status_code = 409


class PayloadTooLargeError(ModelServerError):
    status_code = 413


class ModelNotLoadedError(ModelServerError):
    status_code = 503


def as_server_error(exc: Exception) -> ModelServerError:
    """Our own error as is; KServe's and FastAPI's translated; anything else a 500."""
    if isinstance(exc, ModelServerError):
        return exc
    if isinstance(exc, InvalidInput):
        return BadRequestError(str(exc))
    if isinstance(exc, ModelNotFound):
        return NotFoundError(str(exc))
    if isinstance(exc, ModelNotReady | ServerNotReady):
        return ModelNotLoadedError(str(exc))
    if isinstance(exc, RequestValidationError):
        return _from_validation(exc)
    if isinstance(exc, NotImplementedError):  # e.g. KServe's versioned v2 routes
        return ModelServerError(str(exc) or "not implemented", status_code=501)
    if isinstance(exc, ClientDisconnect):  # nginx's 499: nobody is left to answer
        return ModelServerError("client closed the request", status_code=499)
    if isinstance(exc, RecordsError):  # they carry their own status (404, 400, 503)
        return ModelServerError(str(exc), status_code=exc.status_code)
    if isinstance(exc, HTTPException):  # the router's: no such route (404), method (405)
        headers = dict(exc.headers or {})
        allowed = headers.get("Allow") or headers.get("allow")
        message = str(exc.detail) + (f" (allowed: {allowed})" if allowed else "")
        error = ModelServerError(message, status_code=exc.status_code)
        error.headers = headers
        return error
    return ModelServerError(f"internal error: {type(exc).__name__}")


def _from_validation(exc: RequestValidationError) -> ModelServerError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        reasons = (str((e.get("ctx") or {}).get("error", e.get("msg", ""))) for e in errors)
        return BadRequestError("malformed JSON: " + "; ".join(reasons))
    problems = [
        Problem(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}")
        for e in errors
    ]
    return UnprocessableEntityError("; ".join(str(p) for p in problems), problems)


def error_response(error: ModelServerError) -> JSONResponse:
    body: dict[str, Any] = {"error": error.message}
    if error.problems:
        body["details"] = [p.as_dict() for p in error.problems]
    headers = dict(error.headers)
    if error.model_version:
        headers[MODEL_VERSION_HEADER] = error.model_version
    return JSONResponse(body, status_code=error.status_code, headers=headers or None)


# Told of every failed request, to count it and write it to the prediction log.
FailureSink = Callable[[Request, ModelServerError], None]


class ErrorHandler:
    """The one exception handler of the app, registered for every exception type we expect."""

    def __init__(self, on_failure: FailureSink) -> None:
        self._on_failure = on_failure

    async def __call__(self, request: Request, exc: Exception) -> JSONResponse:
        error = as_server_error(exc)
        if isinstance(error, ModelNotLoadedError):  # every readiness probe until loaded
            log.debug("%s %s: %s", request.method, request.url.path, error)
        elif error.status_code >= 500:
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        else:
            log.info("%s %s: %d %s", request.method, request.url.path, error.status_code, error)
        try:
            self._on_failure(request, error)
        except Exception:  # the reply matters more than its bookkeeping
            log.exception("could not record a failed request")
        return error_response(error)
