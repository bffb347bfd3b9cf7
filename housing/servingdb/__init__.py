"""The serving database: the request log (one row per request) with the feedback on its
predictions, retraining decisions, the policy in force and the retraining lease, in SQLite
or PostgreSQL.

The server writes requests and reads everything; the training job reads predictions and
feedback (live error, drift) and writes decisions and runs. Both run the migrations here
(`RecordStore.migrate`), so neither owns the schema: this package does.

    store = RecordStore("sqlite:///state/records.db")  # or postgresql+psycopg://...
    store.migrate()

Errors derive from RecordsError and carry the HTTP status to answer with.
"""

from housing.servingdb.errors import (
    InvalidFeedbackError,
    RecordsError,
    StoreUnavailableError,
    UnknownPredictionError,
)
from housing.servingdb.models import RequestRecord
from housing.servingdb.store import RecordStore

__all__ = [
    "InvalidFeedbackError",
    "RecordStore",
    "RecordsError",
    "RequestRecord",
    "StoreUnavailableError",
    "UnknownPredictionError",
]
