"""The KServe model: preprocess takes the served version once, predict runs off the event loop.

Hot swap: `publish` replaces one reference to an immutable LoadedModel. A request reads that
reference once, in preprocess, and uses the same LoadedModel (contract, backend, version) to
its end, so a swap in the middle of a request cannot mix two versions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from kserve import InferRequest, InferResponse, Model

from model_server.accounting import REQUEST_STARTED, Accountant
from model_server.errors import (
    MODEL_VERSION_HEADER,
    BadRequestError,
    ModelNotLoadedError,
    ModelServerError,
)
from model_server.loader import LoadedModel
from model_server.metrics import ServerMetrics
from model_server.protocol import (
    ID_OUTPUT,
    PREDICT_OUTPUT,
    V2_DATATYPE,
    Protocol,
    v1_features,
    v1_response,
    v2_features,
    v2_response,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """A request bound to the model version that will answer it."""

    loaded: LoadedModel
    protocol: Protocol
    payload: Any
    request_id: str
    started: float | None


@dataclass(frozen=True)
class Outcome:
    job: Job
    predictions: np.ndarray
    ids: list[str]


class HousingModel(Model):
    def __init__(
        self,
        name: str,
        accountant: Accountant,
        metrics: ServerMetrics,
        executor: Executor,
        max_instances: int,
    ) -> None:
        super().__init__(name, return_response_headers=True)
        self._accountant = accountant
        self._metrics = metrics
        self._executor = executor
        self._max_instances = max_instances
        self._loaded: LoadedModel | None = None

    # -- lifecycle: the watcher loads, KServe only asks ----------------------------------

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    @property
    def served_version(self) -> str | None:
        loaded = self._loaded
        return None if loaded is None else loaded.version

    def publish(self, loaded: LoadedModel) -> None:
        """Serve `loaded` from now on (called from the watcher's thread)."""
        previous = self.served_version
        self._loaded = loaded  # the swap: one reference assignment
        self.ready = True
        self._metrics.model_swapped(loaded.version, loaded.ref.run_id, loaded.backend)
        log.info(
            "serving %s version %s (was %s), backend %s",
            self.name,
            loaded.version,
            previous,
            loaded.backend,
        )

    def load(self) -> bool:
        # KServe calls this on a request to a model that is not ready: loading is the
        # watcher's job, in its thread, so just report.
        return self._loaded is not None

    def start(self) -> None:
        # KServe's default marks the model ready; it is ready when a version is published.
        pass

    async def healthy(self) -> bool:
        return self._loaded is not None

    # -- v2 model metadata: the served version's own signature ---------------------------

    def _require(self) -> LoadedModel:
        loaded = self._loaded
        if loaded is None:
            raise ModelNotLoadedError(f"model {self.name} is not loaded yet")
        return loaded

    def get_input_types(self) -> list[dict[str, Any]]:
        schema = self._require().schema
        return [
            {"name": name, "datatype": V2_DATATYPE[kind], "shape": [-1]}
            for name, kind in zip(schema.names, schema.types, strict=True)
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        self._require()
        return [
            {"name": PREDICT_OUTPUT, "datatype": "FP64", "shape": [-1]},
            {"name": ID_OUTPUT, "datatype": "BYTES", "shape": [-1]},
        ]

    # -- the request path ----------------------------------------------------------------

    def validate(self, payload: Any) -> Any:
        # KServe's check looks at raw dicts; ours happens against the served contract.
        return payload

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Job:
        loaded = self._require()
        if isinstance(payload, InferRequest):
            protocol: Protocol = "v2"
            request_id = (headers or {}).get("x-request-id") or payload.id
        else:
            protocol = "v1"
            request_id = (headers or {}).get("x-request-id")
            if isinstance(payload, bytes | bytearray | str):
                # KServe passes the body through when the content-type is not JSON.
                try:
                    payload = orjson.loads(payload)
                except orjson.JSONDecodeError as exc:
                    raise BadRequestError(f"malformed JSON: {exc}") from exc
        return Job(
            loaded, protocol, payload, request_id or str(uuid.uuid4()), REQUEST_STARTED.get()
        )

    async def predict(
        self,
        job: Job,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Outcome:
        # CPU work (parse check, inference, records) off the event loop, so that health
        # checks and small requests are answered while a big batch is computed.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._infer, job)

    def _infer(self, job: Job) -> Outcome:
        loaded = job.loaded
        try:
            if job.protocol == "v2":
                x = v2_features(job.payload, loaded.schema, self._max_instances)
            else:
                x = v1_features(job.payload, loaded.schema, self._max_instances)
        except ModelServerError as exc:
            exc.model_version = loaded.version
            raise
        predictions = loaded.predictor.predict(x)
        ids = self._accountant.succeeded(
            protocol=job.protocol,
            version=loaded.version,
            names=loaded.schema.names,
            features=x,
            predictions=predictions,
            request_id=job.request_id,
            started=job.started,
        )
        return Outcome(job, predictions, ids)

    async def postprocess(
        self,
        outcome: Outcome,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        job = outcome.job
        version = job.loaded.version
        if response_headers is not None:
            response_headers[MODEL_VERSION_HEADER] = version
        if job.protocol == "v2":
            return v2_response(job.payload, self.name, version, outcome.predictions, outcome.ids)
        return v1_response(self.name, version, outcome.predictions, outcome.ids)
