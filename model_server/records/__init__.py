"""Prediction records: the log of every prediction and its feedback, written off the request
path in batches (RecordWriter) into SQLite or PostgreSQL (RecordStore).

    store = RecordStore("sqlite:///state/records.db")  # or postgresql+psycopg://...
    store.migrate()
    writer = RecordWriter(store, spill_dir="state/spill")
    writer.start()
    writer.submit(records)  # on the request path: never raises, never waits
    ...
    writer.stop(timeout)  # at SIGTERM: flush; what the database cannot take is spilled

Errors derive from RecordsError and carry the HTTP status to answer with.
"""

from model_server.records.errors import (
    InvalidFeedbackError,
    RecordsError,
    StoreUnavailableError,
    UnknownPredictionError,
)
from model_server.records.models import PredictionRecord
from model_server.records.store import RecordStore
from model_server.records.writer import RecordWriter

__all__ = [
    "InvalidFeedbackError",
    "PredictionRecord",
    "RecordStore",
    "RecordWriter",
    "RecordsError",
    "StoreUnavailableError",
    "UnknownPredictionError",
]
