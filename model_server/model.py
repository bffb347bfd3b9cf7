"""The KServe model: preprocess takes the served versions once, predict runs off the event loop.

Hot swap: `publish` (and `publish_challenger`) replace one reference to an immutable pair of
LoadedModels. A request reads that reference once, in preprocess, and uses the same versions
(contract, backend, version) to its end, so a swap in the middle of a request cannot mix two.

With a challenger loaded (CHALLENGER_MODE), preprocess also decides who answers: in shadow
mode the champion answers and the challenger predicts the same instances beside it (logged as
shadow rows); in canary mode the challenger answers CANARY_PERCENT of the requests, the same
way every time for a request that carries a key.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import orjson
from kserve import InferRequest, InferResponse, Model

from model_server.accounting import REQUEST_STARTED, Accountant, Answered, ShadowPrediction
from model_server.coalescer import Coalescer
from model_server.errors import (
    MODEL_VERSION_HEADER,
    BadRequestError,
    ModelNotLoadedError,
    ModelServerError,
)
from model_server.ids import new_request_id
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
from model_server.settings import ChallengerMode
from model_server.signals import InputWindows

log = logging.getLogger(__name__)

# Requests of at most this many instances are computed on the event loop itself, coalesced
# (~40 us for one row, ~700 for 100): the hop to the pool and back costs ~100-150 us CPU and
# its tail latency, and the trees called once for several requests run with hot caches. 100-row
# requests rose from ~100,000 to ~143,000 rows/s so (bench/README.md, issue 15's fifth round).
# Bigger ones go to the pool: a 1,000-instance request would hold the loop for ~7 ms.
INLINE_MAX_INSTANCES = 128

# Canary routing key: the X-Request-Key header, or the v2 request parameter of this name.
REQUEST_KEY_HEADER = "x-request-key"
REQUEST_KEY_PARAMETER = "request_key"


def key_share(key: str) -> float:
    """Where a request key falls in [0, 100): the first 8 bytes of its SHA-256 as a fraction.
    Stable across processes and replicas (unlike Python's hash())."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0


class CanaryRouter:
    """Sends `percent` of requests to the challenger: by key when given, else at random."""

    def __init__(self, percent: float, draw: Callable[[], float] = random.random) -> None:
        self.percent = percent
        self._draw = draw

    def to_challenger(self, key: str | None) -> bool:
        share = key_share(key) if key is not None else self._draw() * 100.0
        return share < self.percent


def request_key(headers: Mapping[str, str] | None, payload: Any) -> str | None:
    key = (headers or {}).get(REQUEST_KEY_HEADER)
    if not key and isinstance(payload, InferRequest) and isinstance(payload.parameters, dict):
        value = payload.parameters.get(REQUEST_KEY_PARAMETER)
        key = None if value is None else str(value)
    return key or None


@dataclass(frozen=True)
class Served:
    """The versions loaded now; replaced as a whole, never changed."""

    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None


@dataclass(frozen=True)
class Job:
    """A request bound to the model version that will answer it (and the one in shadow)."""

    loaded: LoadedModel
    protocol: Protocol
    payload: Any
    request_id: str
    started: float | None
    shadow: LoadedModel | None = None


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
        *,
        mode: ChallengerMode = "off",
        canary_percent: float = 0.0,
        windows: InputWindows | None = None,
    ) -> None:
        super().__init__(name, return_response_headers=True)
        self._accountant = accountant
        self._metrics = metrics
        self._executor = executor
        self._max_instances = max_instances
        self.mode: ChallengerMode = mode
        self._router = CanaryRouter(canary_percent)
        self._windows = windows
        self._served = Served()
        self._coalescer: Coalescer[Job, Outcome] = Coalescer(self._settle_all)
        self._publishing = threading.Lock()  # two watchers publish: one at a time

    # -- lifecycle: the watchers load, KServe only asks ----------------------------------

    @property
    def loaded(self) -> LoadedModel | None:
        """The champion."""
        return self._served.champion

    @property
    def served_version(self) -> str | None:
        loaded = self._served.champion
        return None if loaded is None else loaded.version

    @property
    def challenger(self) -> LoadedModel | None:
        """The challenger in use: loaded, and not the champion's version."""
        return _active_challenger(self._served)

    @property
    def challenger_version(self) -> str | None:
        """The version loaded under the challenger alias (even if it is the champion's)."""
        loaded = self._served.challenger
        return None if loaded is None else loaded.version

    def serving(self) -> list[LoadedModel]:
        """The versions answering or predicting requests now: champion, then challenger."""
        served = self._served
        active = _active_challenger(served)
        return [m for m in (served.champion, active) if m is not None]

    def find(self, version: str) -> LoadedModel | None:
        """A version already loaded under either alias."""
        served = self._served
        for loaded in (served.champion, served.challenger):
            if loaded is not None and loaded.version == version:
                return loaded
        return None

    def publish(self, loaded: LoadedModel) -> None:
        """Serve `loaded` from now on (called from the champion watcher's thread)."""
        with self._publishing:
            previous = self.served_version
            self._served = replace(self._served, champion=loaded)  # the swap
        self.ready = True
        self._metrics.model_swapped(loaded.version, loaded.ref.run_id, loaded.backend)
        freeze_heap()
        log.info(
            "serving %s version %s (was %s), backend %s",
            self.name,
            loaded.version,
            previous,
            loaded.backend,
        )

    def upgrade(self, old: LoadedModel, new: LoadedModel) -> bool:
        """Serve `new` (the same version with another backend, or a note on it) wherever `old`
        is served; False if `old` is no longer served. Requests that already took `old` finish
        with it: a request never mixes two backends."""
        with self._publishing:
            served = self._served
            champion = new if served.champion is old else served.champion
            challenger = new if served.challenger is old else served.challenger
            if champion is served.champion and challenger is served.challenger:
                return False
            self._served = Served(champion=champion, challenger=challenger)
        if champion is new:
            self._metrics.model_swapped(new.version, new.ref.run_id, new.backend)
        if challenger is new:
            self._metrics.challenger_swapped(new.version, new.ref.run_id, new.backend, self.mode)
        log.info("version %s of %s: backend %s", new.version, self.name, new.backend)
        return True

    def publish_challenger(self, loaded: LoadedModel) -> None:
        """Use `loaded` as the challenger from now on (the challenger watcher's thread)."""
        with self._publishing:
            previous = self.challenger_version
            self._served = replace(self._served, challenger=loaded)
        self._metrics.challenger_swapped(
            loaded.version, loaded.ref.run_id, loaded.backend, self.mode
        )
        log.info(
            "challenger of %s is version %s (was %s), %s mode",
            self.name,
            loaded.version,
            previous,
            self.mode,
        )

    def withdraw_challenger(self) -> None:
        """The challenger alias is gone: champion only from now on."""
        with self._publishing:
            previous = self.challenger_version
            if previous is None:
                return
            self._served = replace(self._served, challenger=None)
        self._metrics.challenger_withdrawn()
        log.info("challenger version %s of %s withdrawn", previous, self.name)

    def load(self) -> bool:
        # KServe calls this on a request to a model that is not ready: loading is the
        # watcher's job, in its thread, so just report.
        return self._served.champion is not None

    def start(self) -> None:
        # KServe's default marks the model ready; it is ready when a version is published.
        pass

    async def healthy(self) -> bool:
        return self._served.champion is not None

    # -- v2 model metadata: the served version's own signature ---------------------------

    def _require(self) -> LoadedModel:
        loaded = self._served.champion
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
        served = self._served  # read once: this request's versions
        loaded = served.champion
        if loaded is None:
            raise ModelNotLoadedError(f"model {self.name} is not loaded yet")
        shadow = None
        challenger = _active_challenger(served)
        if challenger is not None:
            if self.mode == "shadow":
                shadow = challenger
            elif self.mode == "canary" and self._router.to_challenger(
                request_key(headers, payload)
            ):
                loaded = challenger
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
            loaded,
            protocol,
            payload,
            request_id or new_request_id(),
            REQUEST_STARTED.get(),
            shadow,
        )

    async def predict(
        self,
        job: Job,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Outcome:
        # A request of up to INLINE_MAX_INSTANCES runs on the event loop, its trees computed
        # with those of the other such requests of the same iteration (Coalescer). A bigger
        # batch's CPU work (parse check, inference, records) runs off the event loop, so that
        # health checks and small requests are answered while it is computed.
        if instance_count(job) <= INLINE_MAX_INSTANCES:
            return await self._coalescer.predict(job.loaded.predictor, self._features(job), job)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._infer, job)

    def _infer(self, job: Job) -> Outcome:
        x = self._features(job)
        return self._settle(job, x, job.loaded.predictor.predict(x))

    def _features(self, job: Job) -> np.ndarray:
        """The request's instances, validated against the answering version's contract."""
        loaded = job.loaded
        try:
            if job.protocol == "v2":
                return v2_features(job.payload, loaded.schema, self._max_instances)
            return v1_features(job.payload, loaded.schema, self._max_instances)
        except ModelServerError as exc:
            exc.model_version = loaded.version
            raise

    def _settle(self, job: Job, x: np.ndarray, predictions: np.ndarray) -> Outcome:
        return self._settle_all([(job, x, predictions)], x, predictions)[0]

    def _settle_all(
        self,
        batch: Sequence[tuple[Job, np.ndarray, np.ndarray]],
        x: np.ndarray,
        predictions: np.ndarray,
    ) -> list[Outcome]:
        """Requests one version answered, each (job, instances, predictions), and all their
        instances and predictions: the challenger's shadows (if any), the log records, the
        metrics, the drift window."""
        loaded = batch[0][0].loaded
        answered = [
            Answered(
                job.protocol,
                job.request_id,
                job.started,
                rows,
                values,
                None if job.shadow is None else self._predict_shadow(job.shadow, loaded, rows),
            )
            for job, rows, values in batch
        ]
        ids = self._accountant.all_succeeded(
            loaded.version, loaded.schema.names, answered, predictions
        )
        if self._windows is not None:
            self._windows.add(loaded.version, x)
        return [
            Outcome(job, values, these) for (job, _, values), these in zip(batch, ids, strict=True)
        ]

    def _predict_shadow(
        self, challenger: LoadedModel, served: LoadedModel, x: np.ndarray
    ) -> ShadowPrediction | None:
        """The challenger's predictions of the instances the champion accepted, or None if
        its own contract refuses them or it fails: the answer never depends on it."""
        version = challenger.version
        try:
            names = served.schema.names
            if challenger.schema.names != names:  # same features, another order
                x = x[:, [names.index(n) for n in challenger.schema.names]]
            challenger.schema.check(x)
        except (ValueError, ModelServerError) as exc:
            log.debug("shadow version %s refused a request: %s", version, exc)
            self._metrics.shadow_predicted(version, "refused")
            return None
        started = time.perf_counter()
        try:
            predictions = challenger.predictor.predict(x)
        except Exception:
            log.exception("shadow version %s failed to predict", version)
            self._metrics.shadow_predicted(version, "failed")
            return None
        if self._windows is not None:
            self._windows.add(version, x)
        return ShadowPrediction(version, predictions, time.perf_counter() - started)

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


def instance_count(job: Job) -> int:
    """How many instances the request claims, from its outer shape alone (no validation):
    a v1 `instances` list's length, a v2 request's first dimension. Unknown: a large number."""
    payload = job.payload
    if job.protocol == "v1":
        instances = payload.get("instances") if isinstance(payload, dict) else None
        return len(instances) if isinstance(instances, list) else 1 << 30
    count = 0
    for tensor in payload.inputs:
        shape = tensor.shape
        if not shape or not isinstance(shape[0], int):
            return 1 << 30
        count = max(count, shape[0])
    return count


def freeze_heap() -> None:
    """Move every object alive now (libraries, the loaded models: ~420,000 after start-up) out
    of the garbage collector's reach. Full collections then stop walking them: under load
    they ran every few seconds and stopped every thread for 250-400 ms (the p99 tail). Unfrozen
    first, so that a version swapped out is collected once no request uses it."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _active_challenger(served: Served) -> LoadedModel | None:
    challenger, champion = served.challenger, served.champion
    if challenger is None or champion is None or challenger.version == champion.version:
        return None
    return challenger
