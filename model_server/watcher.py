"""Follows the registry alias from a background thread: load the new version, then swap.

The request path never waits on MLflow: a slow or unreachable registry only delays the next
version (and, before the first one, readiness). Failures are retried with exponential backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from model_server.loader import LoadedModel, ModelRef, NotPublishedError
from model_server.metrics import ServerMetrics

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.5
# A version that fails to load is retried at most this far apart (it costs a full load).
MAX_LOAD_RETRY_SECONDS = 300.0


class ModelSource(Protocol):
    def resolve(self) -> ModelRef: ...

    def load(self, ref: ModelRef) -> LoadedModel: ...


class ModelWatcher:
    """Polls `source` every `poll_interval` seconds and publishes each new version once."""

    def __init__(
        self,
        source: ModelSource,
        publish: Callable[[LoadedModel], None],
        served_version: Callable[[], str | None],
        metrics: ServerMetrics,
        poll_interval: float,
        *,
        name: str = "model-watcher",
        on_missing: Callable[[], None] | None = None,
        reuse: Callable[[str], LoadedModel | None] | None = None,
    ) -> None:
        """`on_missing` is told when the alias does not exist (the champion's watcher keeps
        serving instead); `reuse` may hand over a version already loaded (by the other
        alias's watcher) instead of loading it again."""
        self._source = source
        self._publish = publish
        self._served_version = served_version
        self._metrics = metrics
        self._interval = poll_interval
        self._name = name
        self._on_missing = on_missing
        self._reuse = reuse
        self._failures = 0
        self._stopping = threading.Event()
        # Held while publishing: once halt() returns, no version is published any more.
        self._publishing = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def halt(self) -> None:
        """Publish nothing from now on (the server is stopping); returns at once, or when a
        publication in progress is done."""
        with self._publishing:
            self._stopping.set()

    def stop(self, timeout: float = 5.0) -> None:
        self.halt()
        if self._thread is not None:
            # A load in progress is not interrupted; the thread is a daemon and dies with us.
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._stopping.wait(self.poll_once())

    def _retry_in(self, cap: float) -> float:
        self._failures += 1
        return min(cap, FIRST_RETRY_SECONDS * 2 ** (self._failures - 1))

    def _succeeded(self) -> float:
        self._failures = 0
        self.last_error = None
        return self._interval

    def poll_once(self) -> float:
        """Look at the alias once, load and publish a new version; seconds until the next."""
        self._metrics.polled()
        try:
            ref = self._source.resolve()
        except NotPublishedError as exc:
            # Not an error: the training job has not promoted a model yet.
            if self.last_error != str(exc):
                log.info("nothing to serve yet: %s", exc)
            self.last_error = str(exc)
            if self._on_missing is not None:
                self._on_missing()
            return self._interval
        except Exception as exc:
            self._metrics.poll_failed()
            self.last_error = f"registry unreachable: {type(exc).__name__}: {exc}"
            log.warning("%s", self.last_error)
            return self._retry_in(self._interval)

        if ref.version == self._served_version():
            return self._succeeded()
        known = self._reuse(ref.version) if self._reuse is not None else None
        if known is not None:
            return self._publish_unless_stopping(known)
        log.info("loading %s version %s", ref.name, ref.version)
        try:
            loaded = self._source.load(ref)
        except Exception as exc:
            self._metrics.load_finished(ok=False)
            self.last_error = f"version {ref.version} failed to load: {type(exc).__name__}: {exc}"
            log.exception(
                "version %s failed to load; still serving %s", ref.version, self._served_version()
            )
            return self._retry_in(max(self._interval, MAX_LOAD_RETRY_SECONDS))
        self._metrics.load_finished(ok=True)
        return self._publish_unless_stopping(loaded)

    def _publish_unless_stopping(self, loaded: LoadedModel) -> float:
        with self._publishing:
            if self._stopping.is_set():  # loaded while the server stopped: never served
                log.info("stopping: version %s is not served", loaded.version)
                return 0.0
            self._publish(loaded)
        return self._succeeded()
