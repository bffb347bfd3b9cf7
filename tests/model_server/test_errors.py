"""The error hierarchy and its one handler: statuses, body shape, foreign exceptions."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from starlette.requests import Request

from housing.servingdb import InvalidFeedbackError, UnknownPredictionError
from model_server.errors import (
    MAX_LISTED_PROBLEMS,
    ErrorHandler,
    InvalidInstancesError,
    ModelServerError,
    Problem,
    as_server_error,
    error_response,
)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidInput("bad"), 400),
        (ModelNotFound("x"), 404),
        (ModelNotReady("x"), 503),
        (UnknownPredictionError("abc"), 404),
        (InvalidFeedbackError("nan"), 400),
        (
            RequestValidationError(
                [{"type": "missing", "loc": ("body", "x"), "msg": "Field required"}]
            ),
            422,
        ),
        (
            RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", 1),
                        "msg": "JSON decode error",
                        "ctx": {"error": "Expecting value"},
                    }
                ]
            ),
            400,
        ),
        (NotImplementedError("Model versioning not supported yet."), 501),
        (RuntimeError("boom"), 500),
    ],
)
def test_translation(exc: Exception, status: int) -> None:
    assert as_server_error(exc).status_code == status


def test_internal_errors_do_not_leak_details() -> None:
    assert as_server_error(RuntimeError("secret path /x")).message == "internal error: RuntimeError"


def test_message_lists_ten_problems_and_counts_the_rest() -> None:
    problems = [Problem("bad", i, "Latitude") for i in range(MAX_LISTED_PROBLEMS + 3)]
    error = InvalidInstancesError(problems)
    assert error.message.count("feature 'Latitude'") == MAX_LISTED_PROBLEMS
    assert error.message.endswith("(and 3 more)")
    assert str(problems[2]) == "instance 2, feature 'Latitude': bad"


def test_handler_answers_and_reports_the_failure() -> None:
    seen: list[tuple[str, int]] = []
    handler = ErrorHandler(
        lambda request, error: seen.append((request.url.path, error.status_code))
    )
    error = InvalidInstancesError([Problem("is a string, expected a number", 3, "HouseAge")])
    error.model_version = "7"
    scope = {"type": "http", "method": "POST", "path": "/v1/models/m:predict", "headers": [],
             "query_string": b"", "server": ("127.0.0.1", 80), "scheme": "http"}  # fmt: skip
    response = asyncio.run(handler(Request(scope), error))
    assert response.status_code == 400
    assert response.headers["x-model-version"] == "7"
    body = json.loads(bytes(response.body))
    assert body["error"] == "instance 3, feature 'HouseAge': is a string, expected a number"
    assert body["details"] == [
        {"instance": 3, "feature": "HouseAge", "message": "is a string, expected a number"}
    ]
    assert seen == [("/v1/models/m:predict", 400)]


def test_a_failing_sink_does_not_change_the_answer() -> None:
    def broken(request: Request, error: ModelServerError) -> None:
        raise OSError("disk full")

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}
    response = asyncio.run(
        ErrorHandler(broken)(Request(scope), ModelServerError("x", status_code=418))
    )
    assert response.status_code == 418


def test_router_errors_keep_their_status_and_allow_header() -> None:
    from starlette.exceptions import HTTPException

    error = as_server_error(HTTPException(405, headers={"Allow": "POST"}))
    assert (error.status_code, error.message) == (405, "Method Not Allowed (allowed: POST)")
    response = error_response(error)
    assert response.headers["allow"] == "POST"
    assert as_server_error(HTTPException(404)).message == "Not Found"


def test_control_characters_and_lone_surrogates_are_escaped() -> None:
    """A request's names are quoted in messages: NUL cannot go into PostgreSQL, a lone
    surrogate into UTF-8 (the response itself failed, a 500)."""
    error = InvalidInstancesError([Problem("not a feature", 0, "a\x00b\ud800\nc")])
    assert error.message == "instance 0, feature 'a\\u0000b\\ud800\nc': not a feature"
    body = json.loads(bytes(error_response(error).body))
    assert body["details"][0]["feature"] == "a\\u0000b\\ud800\nc"
