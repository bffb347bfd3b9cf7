"""Wiring: KServe's ModelServer with our model, readiness, error handler, middleware and routes.

What is changed in KServe, and why:
- start() registers the model even before it is loaded (KServe refuses to start without a
  ready model; we stay up, live and not ready, until the watcher publishes a version);
- /v2/health/ready reports the model's readiness (KServe's says True unconditionally);
- the REST server binds the configured host, and gRPC is off;
- KServe's per-request timing log lines are dropped: the metrics time every request.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cloudevents.sdk.converters.util import has_binary_headers
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from kserve import InferRequest, ModelServer
from kserve.constants.constants import (
    FASTAPI_APP_IMPORT_STRING,
    INFERENCE_CONTENT_LENGTH_HEADER,
    PredictorProtocol,
)
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from kserve.model import BaseKServeModel
from kserve.predictor_config import PredictorConfig
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import RESTServer
from kserve.utils import utils as kserve_utils
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp

from housing.servingdb import RecordsError, RecordStore
from housing.servingdb.retrain import RetrainStore
from model_server import docs_page, openapi
from model_server.accounting import REQUEST_STARTED, Accountant
from model_server.auth import REFUSAL_KINDS, AccessControl, document_access
from model_server.compiled_trees import CompiledTrees
from model_server.errors import (
    BadRequestError,
    ErrorHandler,
    InvalidInstancesError,
    ModelServerError,
)
from model_server.fastpath import FastInference
from model_server.launchers import make_launcher
from model_server.loader import RegistryLoader
from model_server.logs import RequestContext
from model_server.metrics import ServerMetrics
from model_server.middleware import AccessGuard, RequestGuard
from model_server.model import HousingModel
from model_server.protocol import (
    content_type_hint,
    protocol_of,
    v1_duplicate_keys,
    v1_json,
    v2_invalid_text,
)
from model_server.records.writer import RecordWriter
from model_server.retrain_routes import RetrainContext, retrain_router
from model_server.routes import OpsContext, ops_router
from model_server.settings import ServerSettings
from model_server.shutdown import GracefulServer
from model_server.signals import InputWindows, SignalsMonitor
from model_server.watcher import ModelWatcher

log = logging.getLogger(__name__)

# Requests computing at once, each single-threaded: one per core the pod may use.
INFERENCE_THREADS = max(1, kserve_utils.cpu_count())
# Seconds uvicorn waits for open requests at shutdown, then the log writer's flush.
GRACE_SECONDS = 15
FLUSH_SECONDS = 10.0
# A batch's predictions: 100-row requests commit every 40 requests at this bound, and rose from
# ~138,000 to ~154,000 rows/s against 500 (bench/README.md, issue 15's fifth round).
WRITER_BATCH = 4000
# A batch's rows are built and inserted on the event loop's core, and requests wait for them:
# in alternating pairs, 500 one-row requests a batch put the single-row p99 at 7.2-7.4 ms, 100
# at 4.6-5.0 (bench/README.md, issue 15's third round).
WRITER_BATCH_ROWS = 100
WRITER_FLUSH_SECONDS = 0.5


class PredictorDataPlane(DataPlane):
    async def ready(self) -> bool:
        models = list(self.model_registry.get_models().values())
        return bool(models) and all([await m.healthy() for m in models])

    def decode(
        self,
        body: Any,
        headers: Any,
        protocol_version: str = PredictorProtocol.REST_V1.value,
        model_name: str | None = None,
    ) -> Any:
        headers = headers if headers is not None else {}
        v1 = protocol_version == PredictorProtocol.REST_V1.value and isinstance(body, bytes)
        if v1 and not has_binary_headers(headers):  # (a binary CloudEvent is KServe's)
            # JSON whatever the Content-Type says (curl -d says a form), parsed here and not
            # by KServe, which hands a body of another type to the model as bytes.
            decoded = v1_json(body, headers.get("content-type"))
            repeated = v1_duplicate_keys(body, decoded)
            if repeated:  # the parser keeps the last of two equal keys: say so instead
                raise InvalidInstancesError(repeated)
            return self.decode_cloudevent(decoded)
        if protocol_version == PredictorProtocol.REST_V2.value and isinstance(body, bytes):
            # A v2 body without the binary-extension header is all JSON (Triton's rule;
            # tritonclient sends JSON-only requests without a content-type).
            headers.setdefault(INFERENCE_CONTENT_LENGTH_HEADER, str(len(body)))
        # KServe's decoding lets numpy's and dict lookups' errors escape as 500s.
        try:
            decoded, attributes = super().decode(body, headers, protocol_version, model_name)
        except ModelServerError:
            raise
        except (InvalidInput, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            message = str(exc) if isinstance(exc, InvalidInput) else f"{type(exc).__name__}: {exc}"
            hint = content_type_hint(headers.get("content-type")) if isinstance(body, bytes) else ""
            raise BadRequestError(f"malformed request{hint}: {message}") from exc
        if isinstance(decoded, InferRequest):
            invalid = v2_invalid_text(decoded)
            if invalid:
                raise BadRequestError(
                    f"not valid Unicode text (a lone surrogate escape) in {', '.join(invalid)}"
                )
        return decoded, attributes

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata: dict[str, Any] = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        if isinstance(model, HousingModel) and model.loaded is not None:
            metadata["versions"] = [model.loaded.version]
            metadata["platform"] = model.loaded.backend
        return metadata


class PredictorRESTServer(RESTServer):
    """KServe's REST server with private methods overridden (KServe has no public hook for
    them): each upstream method followed here is pinned by tests/model_server/test_kserve_pin.py.
    """

    def __init__(
        self,
        *args: Any,
        host: str,
        customize: Callable[[FastAPI], ASGIApp],
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.config.host = host  # KServe hard-codes 0.0.0.0
        self._server = GracefulServer(self.config)
        self._customize = customize

    def _add_middlewares(self, app: FastAPI) -> None:
        # Replaces KServe's TimingMiddleware, which logs a line per request.
        pass

    def _register_endpoints(self, app: FastAPI) -> None:
        # KServe's routes less those this server does not serve (model_server/openapi.py).
        openapi.register_kserve_endpoints(app, self.dataplane)

    def create_application(self) -> None:
        super().create_application()
        from kserve.model_server import app

        # After KServe's: our exception handlers replace its handlers of the same types.
        self.config.app = self._customize(app)


class PredictorServer(ModelServer):
    def __init__(
        self,
        settings: ServerSettings,
        customize: Callable[[FastAPI], ASGIApp],
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(
            http_port=settings.http_port,
            grpc_port=settings.grpc_port,
            workers=1,
            enable_grpc=False,
            enable_docs_url=False,
            enable_latency_logging=False,
            grace_period=GRACE_SECONDS,
            predictor_config=PredictorConfig(predictor_host=None),
            access_log_format=None,
        )
        self.dataplane = PredictorDataPlane(model_registry=self.registered_models)
        self._host = settings.host
        self._customize = customize
        self._on_stop = on_stop
        self._stopped_early = False

    def start(self, models: list[BaseKServeModel]) -> None:
        # ModelServer.start, one process and no gRPC, with our RESTServer (pinned by
        # tests/model_server/test_kserve_pin.py).
        for model in models:
            self.register_model(model)
            model.start()
        self._rest_server = PredictorRESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            grace_period=self.grace_period,
            timeout_keep_alive=self.timeout_keep_alive,
            host=self._host,
            customize=self._customize,
        )
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())

    def register_signal_handler(self) -> None:
        # KServe's handler schedules the shutdown on the running event loop: a signal before
        # asyncio.run starts it raised "RuntimeError: no running event loop".
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            signal.signal(sig, self._handle_signal)

    def _handle_signal(self, sig: int, frame: object) -> None:
        self._on_stop()  # before KServe logs "Stopping": nothing is published after it
        self._rest_server._server.should_exit = True  # uvicorn may not watch signals yet
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not serving yet: _serve returns at once
            self._stopped_early = True
            log.info("stopped before serving (signal %d)", sig)
            return
        self.stop(sig)

    async def _serve(self) -> None:
        if self._stopped_early:
            for server in self.servers:
                server.close()  # the coroutines never awaited
            return
        await super()._serve()


def limit_native_threads() -> None:
    """One OpenMP/BLAS thread in the calling thread (OpenMP limits are per thread)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def _document_access(app: FastAPI, access: AccessControl) -> None:
    """/openapi.json declares the security schemes and each route's role and refusals (on
    every build: the document is rebuilt, a fresh copy, when the served version changes)."""
    build = app.openapi

    def document() -> dict[str, Any]:
        schema = build()
        document_access(schema, access)
        return schema

    app.openapi = document  # type: ignore[method-assign]


class App:
    """The running server's parts, built from settings; `run()` serves until SIGTERM."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics(settings.model_name)
        self.store = RecordStore(settings.database_url)
        self.writer = RecordWriter(
            self.store,
            batch_size=WRITER_BATCH,
            batch_rows=WRITER_BATCH_ROWS,
            flush_interval=WRITER_FLUSH_SECONDS,
            max_buffer=settings.log_buffer_rows,
            spill_dir=settings.spill_dir,
            spill_max_bytes=settings.spill_max_bytes,
        )
        self.accountant = Accountant(settings.model_name, self.metrics, self.writer)
        self.executor = ThreadPoolExecutor(
            INFERENCE_THREADS, thread_name_prefix="inference", initializer=limit_native_threads
        )
        self.windows = InputWindows(settings.drift_window)
        self.model = HousingModel(
            settings.model_name,
            self.accountant,
            self.metrics,
            self.executor,
            settings.max_instances,
            mode=settings.challenger_mode,
            canary_percent=settings.canary_percent,
            windows=self.windows,
        )
        # Publishes the champion (ONNX), then swaps in its compiled trees once verified.
        self.trees = CompiledTrees(
            self.model.publish,
            self.model.upgrade,
            enabled=settings.compiled_trees,
            cache_dir=settings.compiled_trees_dir,
        )
        self.watcher = ModelWatcher(
            RegistryLoader(settings.tracking_uri, settings.model_uri),
            publish=self.trees.publish,
            served_version=lambda: self.model.served_version,
            metrics=self.metrics,
            poll_interval=settings.poll_interval_seconds,
            name="champion-watcher",
            reuse=self.model.find,
        )
        # The challenger alias is polled only when it is used.
        self.challenger_watcher = (
            None
            if settings.challenger_mode == "off"
            else ModelWatcher(
                RegistryLoader(settings.tracking_uri, settings.challenger_uri),
                publish=self.model.publish_challenger,
                served_version=lambda: self.model.challenger_version,
                metrics=self.metrics,
                poll_interval=settings.poll_interval_seconds,
                name="challenger-watcher",
                on_missing=self.model.withdraw_challenger,
                reuse=self.model.find,
            )
        )
        self.retrain = RetrainStore(self.store)
        self.launcher = make_launcher(settings)
        self.signals = SignalsMonitor(
            self.windows,
            self.model.serving,
            self.store,
            self.retrain,
            self.metrics,
            interval=settings.signals_interval_seconds,
            live_window=settings.live_window,
        )
        self.errors = ErrorHandler(self._record_failure)
        self.started = time.monotonic()

    def _record_failure(self, request: Request, error: ModelServerError) -> None:
        protocol = protocol_of(request.url.path)
        if protocol is None:  # not an inference request: nothing to log
            return
        self.accountant.failed(
            protocol=protocol,
            version=error.model_version or self.model.served_version,
            status=error.status_code,
            error=error.message,
            request_id=request.headers.get("x-request-id"),
            started=REQUEST_STARTED.get(),
        )

    def customize(self, app: FastAPI) -> ASGIApp:
        """Our routes and error handler on KServe's `app`; the application uvicorn serves."""
        ctx = OpsContext(
            self.model, self.store, self.writer, self.watcher, self.metrics, self.started
        )
        app.include_router(ops_router(ctx))
        app.include_router(retrain_router(RetrainContext(self.retrain, self.launcher)))
        openapi.install(
            app,
            self.settings.model_name,
            lambda: None if self.model.loaded is None else self.model.loaded.schema,
            self.settings.max_instances,
        )
        docs_page.install(app)
        for kind in (
            ModelServerError,
            HTTPException,
            RecordsError,
            InvalidInput,
            ModelNotFound,
            ModelNotReady,
            ServerNotReady,
            RequestValidationError,
            ClientDisconnect,
            NotImplementedError,
            Exception,
        ):
            app.add_exception_handler(kind, self.errors)
        # Our layers wrap the app from outside: uvicorn calls them first, and the fast path
        # answers without FastAPI's own layers (its error, telemetry and body-limit middleware:
        # 7-12 us of a single-row request's CPU in two pairs, bench/README.md, issue 15's fifth
        # round). Each layer answers its own errors through
        # the app's error handler; anything else goes on to KServe's app and routes.
        # Innermost: inside the guards, in front of KServe's routing.
        served: ASGIApp = FastInference(app, model=self.model, respond_error=self.errors)
        served = RequestGuard(
            served,
            max_body_bytes=self.settings.max_body_bytes,
            respond_error=self.errors,
            inflight=self.metrics.track_inflight(),
            clock=time.perf_counter,
        )
        # Outside the body guard: a refused request's body is never read.
        access = AccessControl.from_settings(self.settings)
        log.info("%s", access.describe())
        if access.active:
            refused = self.metrics.refusal_counter(REFUSAL_KINDS)
            served = AccessGuard(served, access=access, refused=refused)
            _document_access(app, access)
        if self.settings.log_format == "json":  # outermost: a refusal's line names the request
            served = RequestContext(served, served_version=lambda: self.model.served_version)
        return served

    def _halt_watchers(self) -> None:
        self.watcher.halt()
        if self.challenger_watcher is not None:
            self.challenger_watcher.halt()
        self.trees.halt()  # kills the compile child: a shutdown does not wait for it

    def run(self) -> None:
        self.store.migrate()
        self.writer.start()
        self.metrics.watch_writer(self.writer)
        self.watcher.start()
        if self.challenger_watcher is not None:
            self.challenger_watcher.start()
        self.signals.start()
        server = PredictorServer(self.settings, self.customize, on_stop=self._halt_watchers)
        try:
            server.start([self.model])
        finally:
            self.signals.stop()
            self.watcher.stop()
            self.trees.stop()
            if self.challenger_watcher is not None:
                self.challenger_watcher.stop()
            self.executor.shutdown(wait=True)
            # Every request answered so far has queued its records: write them all.
            pending = self.writer.backlog
            self.writer.stop(FLUSH_SECONDS)
            log.info(
                "prediction log: %d queued records written at shutdown, %d left over",
                pending - self.writer.backlog,
                self.writer.backlog,
            )
