"""Live signals of the served versions, computed off the request path: input drift, live error,
feedback coverage, and the state of retraining.

The request path only copies its validated inputs into a per-version ring buffer
(`InputWindows.add`, a few microseconds); a background thread (`SignalsMonitor`) reads the
buffers, the serving database and the retraining tables every SIGNALS_INTERVAL_SECONDS and
publishes one consistent set of gauges (metrics.Signals).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from housing.drift import DEFAULT_ALPHA, profile_drift
from housing.policy import Outcome, RetrainPolicy
from housing.registry import TEST_R2_TAG
from housing.regression import live_error
from housing.servingdb import RecordStore
from housing.servingdb.retrain import RetrainStore
from model_server.loader import LoadedModel
from model_server.metrics import RetrainSignals, ServerMetrics, Signals, VersionSignals
from model_server.priority import lower_current_thread

log = logging.getLogger(__name__)


class _Ring:
    """The newest `size` rows of one version, oldest overwritten first."""

    def __init__(self, size: int, width: int) -> None:
        self.rows = np.empty((size, width), dtype=np.float64)
        self.next = 0
        self.count = 0

    def add(self, x: np.ndarray) -> None:
        size = len(self.rows)
        if len(x) >= size:
            self.rows[:] = x[-size:]
            self.next, self.count = 0, size
            return
        end = self.next + len(x)
        if end <= size:
            self.rows[self.next : end] = x
        else:
            split = size - self.next
            self.rows[self.next :] = x[:split]
            self.rows[: end - size] = x[split:]
        self.next = end % size
        self.count = min(size, self.count + len(x))

    def snapshot(self) -> np.ndarray:
        if self.count < len(self.rows):
            return self.rows[: self.count].copy()
        # Full: oldest first (order does not matter to drift, but it is cheap to keep).
        return np.concatenate((self.rows[self.next :], self.rows[: self.next]))


class InputWindows:
    """Per served version, the newest validated inputs (the drift window). Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._rings: dict[str, _Ring] = {}
        self._lock = threading.Lock()

    def add(self, version: str, x: np.ndarray) -> None:
        """Called on the request path with the checked [N, features] matrix."""
        if x.ndim != 2 or len(x) == 0:
            return
        with self._lock:
            ring = self._rings.get(version)
            if ring is None or ring.rows.shape[1] != x.shape[1]:
                ring = self._rings[version] = _Ring(self.size, x.shape[1])
            ring.add(x)

    def snapshot(self, version: str) -> np.ndarray:
        with self._lock:
            ring = self._rings.get(version)
            return np.empty((0, 0)) if ring is None else ring.snapshot()

    def keep(self, versions: set[str]) -> None:
        """Forget the windows of versions no longer served."""
        with self._lock:
            for version in set(self._rings) - versions:
                del self._rings[version]


def _offline_r2(loaded: LoadedModel) -> float | None:
    try:
        return float(loaded.ref.tags[TEST_R2_TAG])
    except (KeyError, ValueError):
        return None


@dataclass
class _Previous:
    """Database-derived parts of the last good computation, kept while the database is down."""

    live: dict[str, tuple[int, dict[str, float] | None, float | None]]
    retrain: RetrainSignals | None


class SignalsMonitor:
    """Recomputes every signal each `interval` seconds in its own thread."""

    def __init__(
        self,
        windows: InputWindows,
        served: Callable[[], Sequence[LoadedModel]],
        records: RecordStore,
        retrain: RetrainStore,
        metrics: ServerMetrics,
        interval: float,
        live_window: int,
    ) -> None:
        self._windows = windows
        self._served = served
        self._records = records
        self._retrain = retrain
        self._metrics = metrics
        self._interval = interval
        self._live_window = live_window
        self._previous = _Previous(live={}, retrain=None)
        self._failing: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="signals", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        lower_current_thread()  # drift and the database queries wait for the request path
        while not self._stopping.is_set():
            try:
                self.refresh()
            except Exception:  # the gauges go stale; the thread must not die
                log.exception("could not compute the live signals")
            self._stopping.wait(self._interval)

    def refresh(self) -> Signals:
        """Compute and publish every signal once; the published set."""
        served = list(self._served())
        versions = {loaded.version for loaded in served}
        self._windows.keep(versions)
        retrain = self._retraining()
        # The decision's rule, at the policy in force (the default while it cannot be read).
        alpha = retrain.policy.get("drift_alpha", DEFAULT_ALPHA) if retrain else DEFAULT_ALPHA
        signals = Signals(
            versions=tuple(self._version(loaded, alpha) for loaded in served),
            retrain=retrain,
        )
        self._metrics.publish_signals(signals)
        return signals

    def _version(self, loaded: LoadedModel, alpha: float) -> VersionSignals:
        window = self._windows.snapshot(loaded.version)
        drifts = profile_drift(loaded.profile, window, alpha) if len(window) else []
        samples, live, coverage = self._live(loaded.version)
        return VersionSignals(
            version=loaded.version,
            window=len(window),
            drift={d.feature: (d.psi, d.ks) for d in drifts},
            ks_critical={d.feature: d.ks_critical for d in drifts},
            feedback_samples=samples,
            live=live,
            coverage=coverage,
            offline_r2=_offline_r2(loaded),
        )

    def _live(self, version: str) -> tuple[int, dict[str, float] | None, float | None]:
        try:
            pairs = self._records.labelled(version, limit=self._live_window)
            predicted, labelled = self._records.coverage(version, self._live_window)
        except Exception as exc:
            self._database_failed(exc)
            return self._previous.live.get(version, (0, None, None))
        self._database_back()
        result = (len(pairs), live_error(pairs), labelled / predicted if predicted else None)
        self._previous.live[version] = result
        return result

    def _retraining(self) -> RetrainSignals | None:
        try:
            overview = self._retrain.overview()
            policy = RetrainPolicy.model_validate(self._retrain.policy())
        except Exception as exc:
            self._database_failed(exc)
            return self._previous.retrain
        self._database_back()
        last_success = overview.last_concluded_at
        last_decision = overview.last_decided_at
        result = RetrainSignals(
            running=overview.lease is not None,
            decisions=overview.outcomes,
            last_decision=None if last_decision is None else last_decision.timestamp(),
            last_success=None if last_success is None else last_success.timestamp(),
            last_go_unpromoted=overview.last_finished_outcome not in (None, Outcome.PROMOTED),
            policy={k: float(v) for k, v in policy.model_dump().items()},
        )
        self._previous.retrain = result
        return result

    def _database_failed(self, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self._failing != reason:
            log.warning("live signals: serving database unavailable, last values kept: %s", reason)
        self._failing = reason

    def _database_back(self) -> None:
        if self._failing is not None:
            log.info("live signals: serving database back")
            self._failing = None
