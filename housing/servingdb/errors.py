"""Errors of the records layer; each carries the HTTP status the server should answer with."""

from __future__ import annotations


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
