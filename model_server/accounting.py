"""Every inference request, counted in the metrics and written to the prediction log.

One record per request (a success, a failure, or the challenger's shadow of a success), its
instances as the request's own arrays; instance i's prediction id, returned to the client,
is "<record id>.<i>". Records go to the writer's queue: the request never waits for the
database.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol as Interface

import numpy as np

from housing.servingdb import RequestRecord
from housing.servingdb.models import prediction_ids
from model_server.ids import new_ids, new_request_id
from model_server.metrics import ServerMetrics
from model_server.protocol import Protocol

# perf_counter() when the request's first byte was read; set by the RequestGuard middleware.
REQUEST_STARTED: ContextVar[float | None] = ContextVar("request_started", default=None)
# The version label of requests that no model version handled.
NO_VERSION = "none"


class RecordSink(Interface):
    def submit(self, records: Sequence[RequestRecord]) -> None: ...


def elapsed(started: float | None) -> float:
    return 0.0 if started is None else time.perf_counter() - started


@dataclass(frozen=True)
class ShadowPrediction:
    """What the challenger predicted, in shadow, for the instances of a served request."""

    version: str
    predictions: np.ndarray
    seconds: float


@dataclass(frozen=True)
class Answered:
    """A request served: its checked instances, their predictions, the challenger's shadow."""

    protocol: Protocol
    request_id: str
    started: float | None
    features: np.ndarray
    predictions: np.ndarray
    shadow: ShadowPrediction | None = None


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
        """Log and count a served request (and the challenger's shadow prediction of it, naming
        the served request); the prediction ids, one per instance."""
        answered = Answered(protocol, request_id, started, features, predictions, shadow)
        return self.all_succeeded(version, names, [answered], predictions)[0]

    def all_succeeded(
        self,
        version: str,
        names: Sequence[str],
        answered: Sequence[Answered],
        predictions: np.ndarray,
    ) -> list[list[str]]:
        """`succeeded` for requests `version` answered together (`predictions`: all of theirs,
        in order): their records queued at once, the value histogram updated once."""
        created = datetime.now(UTC)
        records: list[RequestRecord] = []
        ids: list[list[str]] = []
        seconds: list[tuple[str, float]] = []
        for one in answered:
            took = elapsed(one.started)
            # One UUIDv7 per request: time-ordered, so the primary key grows at its end.
            row_id = new_ids(1)[0]
            # Positional: the order is RequestRecord's (id, request_id, created_at, model_name,
            # model_version, protocol, features, inputs, outputs, latency_ms, status, error).
            # The arrays are encoded in the writer thread.
            records.append(
                RequestRecord(
                    row_id,
                    one.request_id,
                    created,
                    self.model_name,
                    version,
                    one.protocol,
                    names,
                    one.features,
                    one.predictions,
                    took * 1000.0,
                    200,
                    None,
                )
            )
            shadow = one.shadow
            if shadow is not None:
                records.append(
                    RequestRecord(
                        new_ids(1)[0],
                        one.request_id,
                        created,
                        self.model_name,
                        shadow.version,
                        one.protocol,
                        names,
                        one.features,
                        shadow.predictions,
                        shadow.seconds * 1000.0,
                        200,
                        None,
                        row_id,
                    )
                )
                self.metrics.shadow_predicted(shadow.version, "ok", shadow.predictions)
            ids.append(prediction_ids(row_id, len(one.predictions)))
            seconds.append((one.protocol, took))
        # Served and shadow rows queued together: they reach the database in the same batch
        # (or the next), before feedback for the served prediction can come.
        self.sink.submit(records)
        self.metrics.requests_succeeded(version, seconds, predictions)
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
                RequestRecord(
                    id=new_ids(1)[0],
                    request_id=request_id or new_request_id(),
                    created_at=datetime.now(UTC),
                    model_name=self.model_name,
                    model_version=version,
                    protocol=protocol,
                    features=None,
                    inputs=None,
                    outputs=None,
                    latency_ms=elapsed(started) * 1000.0,
                    status=status,
                    error=error,
                )
            ]
        )
        self.metrics.request_failed(version, protocol, status)
