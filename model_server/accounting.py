"""Every inference request, counted in the metrics and written to the prediction log.

One record per instance for a success (each with the prediction id returned to the client),
one per request for a failure. Records go to the writer's queue: the request never waits for
the database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol as Interface

import numpy as np

from housing.servingdb import PredictionRecord
from model_server.metrics import ServerMetrics
from model_server.protocol import Protocol, new_ids

# perf_counter() when the request's first byte was read; set by the RequestGuard middleware.
REQUEST_STARTED: ContextVar[float | None] = ContextVar("request_started", default=None)
# The version label of requests that no model version handled.
NO_VERSION = "none"


class RecordSink(Interface):
    def submit(self, records: Sequence[PredictionRecord]) -> None: ...


def elapsed(started: float | None) -> float:
    return 0.0 if started is None else time.perf_counter() - started


@dataclass(frozen=True)
class ShadowPrediction:
    """What the challenger predicted, in shadow, for the instances of a served request."""

    version: str
    predictions: np.ndarray
    seconds: float


class Accountant:
    def __init__(self, model_name: str, metrics: ServerMetrics, sink: RecordSink) -> None:
        self.model_name = model_name
        self.metrics = metrics
        self.sink = sink

    def succeeded(
        self,
        *,
        protocol: Protocol,
        version: str,
        names: Sequence[str],
        features: np.ndarray,
        predictions: np.ndarray,
        request_id: str,
        started: float | None,
        shadow: ShadowPrediction | None = None,
    ) -> list[str]:
        """Log and count a served request (and the challenger's shadow predictions of it,
        each naming the served prediction it shadows); the prediction ids, one per instance."""
        seconds = elapsed(started)
        created = datetime.now(UTC)
        ids = new_ids(len(predictions))
        values: list[float] = predictions.tolist()
        # Widths were checked by validation; strict=True would cost ~20 us per 100 rows.
        inputs = [dict(zip(names, row, strict=False)) for row in features.tolist()]
        latency_ms = seconds * 1000.0
        name = self.model_name
        # Positional: keyword arguments double the cost of building 100 records. The order is
        # PredictionRecord's: id, request_id, created_at, model_name, model_version, protocol,
        # inputs, output, latency_ms, status, error.
        records = [
            PredictionRecord(
                prediction_id,
                request_id,
                created,
                name,
                version,
                protocol,
                row,
                value,
                latency_ms,
                200,
                None,
            )
            for prediction_id, row, value in zip(ids, inputs, values, strict=True)
        ]
        if shadow is not None:
            shadow_values: list[float] = shadow.predictions.tolist()
            records += [
                PredictionRecord(
                    id=shadow_id,
                    request_id=request_id,
                    created_at=created,
                    model_name=self.model_name,
                    model_version=shadow.version,
                    protocol=protocol,
                    inputs=row,
                    output=value,
                    latency_ms=shadow.seconds * 1000.0,
                    status=200,
                    error=None,
                    shadow_of=served_id,
                )
                for shadow_id, served_id, row, value in zip(
                    new_ids(len(ids)), ids, inputs, shadow_values, strict=True
                )
            ]
            self.metrics.shadow_predicted(shadow.version, "ok", shadow.predictions)
        # Served and shadow rows queued together: they reach the database in the same batch
        # (or the next), before feedback for the served prediction can come.
        self.sink.submit(records)
        self.metrics.request_succeeded(version, protocol, seconds, predictions)
        return ids

    def failed(
        self,
        *,
        protocol: Protocol,
        version: str | None,
        status: int,
        error: str,
        request_id: str | None,
        started: float | None,
    ) -> None:
        """Log and count a refused or failed request (one record, without inputs)."""
        version = version or NO_VERSION
        self.sink.submit(
            [
                PredictionRecord(
                    id=str(uuid.uuid4()),
                    request_id=request_id or str(uuid.uuid4()),
                    created_at=datetime.now(UTC),
                    model_name=self.model_name,
                    model_version=version,
                    protocol=protocol,
                    inputs=None,
                    output=None,
                    latency_ms=elapsed(started) * 1000.0,
                    status=status,
                    error=error,
                )
            ]
        )
        self.metrics.request_failed(version, protocol, status)
