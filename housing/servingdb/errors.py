"""Errors of the records layer; each carries the HTTP status the server should answer with."""

from __future__ import annotations

from sqlalchemy import exc


class RecordsError(Exception):
    """Root of the records errors."""

    status_code: int = 500


class UnknownPredictionError(RecordsError, LookupError):
    """Feedback names a prediction id that the store does not hold."""

    status_code = 404

    def __init__(self, prediction_id: str) -> None:
        super().__init__(f"no prediction with id {prediction_id!r}")
        self.prediction_id = prediction_id


class InvalidFeedbackError(RecordsError, ValueError):
    """Feedback whose value cannot be stored (not a number, NaN, infinite)."""

    status_code = 400


class StoreUnavailableError(RecordsError):
    """The database cannot be reached or is locked; worth retrying later."""

    status_code = 503


def connection_failed(error: BaseException) -> bool:
    """Whether `error` is the database's connection failing (down, locked, timed out), not the
    statement: worth retrying later. The one classification the stores and the writer share."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError)
