"""Every Prometheus metric of the server, with one label vocabulary: model_name, model_version.

Names are a contract with the dashboards and alert rules: change them only together.
The metrics are created when the server starts (into the default registry, next to KServe's
own), or into a private registry in tests.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from housing.policy import Outcome

# Seconds: a one-row request takes about a millisecond, a 1000-row batch tens of them.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Units of $100,000; the training target is capped at 5.00001.
VERSIONED = ["model_name", "model_version"]
# Up to this many values a request's are counted into their buckets in Python, not numpy.
SMALL_OBSERVATION = 16
VALUE_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0)
# Outcomes of recorded retraining decisions (housing/servingdb/retrain.py), exported even
# at zero so that rates and alerts see them from the start.
DECISION_OUTCOMES = tuple(o.value for o in Outcome)
SHADOW_OUTCOMES = ("ok", "refused", "failed")


@dataclass(frozen=True)
class VersionSignals:
    """The live signals of one served version (champion or challenger)."""

    version: str
    window: int  # inputs in the drift window
    drift: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # feature: (psi, ks)
    # feature: the KS statistic above which it has drifted (housing.drift, at the policy's alpha)
    ks_critical: Mapping[str, float] = field(default_factory=dict)
    feedback_samples: int = 0  # newest predictions with feedback, at most LIVE_WINDOW
    live: Mapping[str, float] | None = None  # r2, rmse, mae over those
    coverage: float | None = None  # with feedback / predicted, among the newest predictions
    offline_r2: float | None = None  # the version's test_r2 tag


@dataclass(frozen=True)
class RetrainSignals:
    running: bool
    decisions: Mapping[str, int]  # recorded decisions by outcome
    last_decision: float | None  # Unix time of the newest decision
    last_success: float | None  # finished_at of the newest promoted / not_promoted decision
    last_go_unpromoted: bool  # the newest run that went and finished was not promoted
    # The retraining policy in force (housing.policy.RetrainPolicy, stored or default): its
    # numeric thresholds, which the alert rules compare against instead of repeating them.
    policy: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Signals:
    """One consistent set of background-computed gauges, replaced as a whole."""

    versions: tuple[VersionSignals, ...] = ()
    retrain: RetrainSignals | None = None


class LogWriterState(Protocol):
    """What the prediction log's writer tells about itself (model_server.records.RecordWriter)."""

    @property
    def backlog(self) -> int: ...
    @property
    def spilled(self) -> int: ...
    @property
    def spilled_bytes(self) -> int: ...
    @property
    def spill_max_bytes(self) -> int: ...

    written_total: int
    spilled_total: int
    rejected_total: int
    dropped_total: int


class ValueHistogram(Collector):
    """A histogram per model version that takes a request's values at once: counting 100
    values into the buckets with numpy costs ~10 us, 100 Histogram.observe calls ~90 us."""

    def __init__(
        self, name: str, documentation: str, model_name: str, buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.model_name = model_name
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._bound_list: list[float] = self.bounds.tolist()
        self._lock = threading.Lock()
        self._counts: dict[str, np.ndarray] = {}  # per version: one count per bucket, +Inf last
        self._sums: dict[str, float] = {}

    def observe(self, version: str, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        # Bucket i holds bounds[i-1] < v <= bounds[i] (Prometheus' "le"), the last +Inf.
        if values.size <= SMALL_OBSERVATION:
            self._observe_few(version, values.tolist())
            return
        counts = np.bincount(
            np.searchsorted(self.bounds, values, side="left"), minlength=len(self.bounds) + 1
        )
        total = float(values.sum())
        with self._lock:
            totals = self._counts_of(version)
            totals += counts
            self._sums[version] += total

    def _observe_few(self, version: str, values: list[float]) -> None:
        """searchsorted's buckets for a few values, in Python, added to the counts in place:
        observe() of one value takes 1.3 us so (2.4 with a new array of counts; numpy's
        searchsorted and bincount ~10)."""
        bounds = self._bound_list
        inf = len(bounds)  # NaN compares False: searchsorted puts it in +Inf
        buckets = [inf if value != value else bisect_left(bounds, value) for value in values]
        total = sum(values)
        with self._lock:
            counts = self._counts_of(version)
            for bucket in buckets:
                counts[bucket] += 1
            self._sums[version] += total

    def _counts_of(self, version: str) -> np.ndarray:
        """The version's bucket counts (zeros and a zero sum the first time); under _lock."""
        counts = self._counts.get(version)
        if counts is None:
            counts = self._counts[version] = np.zeros(len(self.bounds) + 1, dtype=np.int64)
            self._sums[version] = 0.0
        return counts

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=VERSIONED)]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=VERSIONED)
        with self._lock:
            snapshot = [(v, c.cumsum(), self._sums[v]) for v, c in self._counts.items()]
        les = [*(floatToGoString(b) for b in self.bounds), "+Inf"]
        for version, cumulative, total in snapshot:
            family.add_metric(
                [self.model_name, version],
                buckets=list(zip(les, (float(c) for c in cumulative), strict=True)),
                sum_value=total,
            )
        return [family]


class PredictionLogCollector(Collector):
    """The prediction log writer's backlog and row counters, read at scrape time."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.writer: LogWriterState | None = None

    def describe(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        return list(self._families(None))

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        return list(self._families(self.writer))

    def _families(
        self, writer: LogWriterState | None
    ) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["model_name"]
        gauges = {
            "model_server_prediction_log_backlog": (
                "Prediction records accepted but not yet written to the serving database "
                "(in memory, in flight or spilled to disk).",
                lambda w: w.backlog,
            ),
            "model_server_prediction_log_spilled_backlog": (
                "Of the backlog, records waiting in spill files on local disk.",
                lambda w: w.spilled,
            ),
            "model_server_prediction_log_spill_bytes": (
                "Size of the spill files waiting on local disk, in bytes.",
                lambda w: w.spilled_bytes,
            ),
            "model_server_prediction_log_spill_limit_bytes": (
                "The spill files' size limit (MODEL_SERVER_SPILL_MAX_BYTES): rows that do not "
                "fit are dropped and counted. 0: no limit.",
                lambda w: w.spill_max_bytes,
            ),
        }
        counters = {
            "model_server_prediction_log_written_rows": (
                "Prediction records committed to the serving database.",
                lambda w: w.written_total,
            ),
            "model_server_prediction_log_spilled_rows": (
                "Prediction records ever spilled to local disk (buffer full or database down).",
                lambda w: w.spilled_total,
            ),
            "model_server_prediction_log_rejected_rows": (
                "Prediction records the database refused, set aside in the spill folder's "
                "rejected.jsonl.",
                lambda w: w.rejected_total,
            ),
            "model_server_prediction_log_dropped_rows": (
                "Prediction records lost (buffer full without a spill folder, spill files at "
                "their size limit, spill disk failing).",
                lambda w: w.dropped_total,
            ),
        }
        for name, (doc, read) in gauges.items():
            gauge = GaugeMetricFamily(name, doc, labels=labels)
            gauge.add_metric([self.model_name], float(read(writer) if writer else 0))
            yield gauge
        for name, (doc, read) in counters.items():
            counter = CounterMetricFamily(name, doc, labels=labels)
            counter.add_metric([self.model_name], float(read(writer) if writer else 0))
            yield counter


class SignalsCollector(Collector):
    """Exports the latest `Signals`: a scrape sees one whole set, and series of versions no
    longer served disappear with the set that dropped them."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.signals = Signals()

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return list(self._families(Signals()))

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return list(self._families(self.signals))

    def _families(self, signals: Signals) -> Iterator[GaugeMetricFamily]:
        name = self.model_name
        versioned = ["model_name", "model_version"]

        def gauge(metric: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(metric, doc, labels=labels)

        psi = gauge(
            "model_server_feature_drift_psi",
            "PSI of the drift window's inputs against the version's feature profile "
            "(< 0.1 no shift, > 0.2 significant).",
            [*versioned, "feature"],
        )
        ks = gauge(
            "model_server_feature_drift_ks",
            "Two-sample Kolmogorov-Smirnov statistic of the drift window against the profile's "
            "reference sample.",
            [*versioned, "feature"],
        )
        ks_critical = gauge(
            "model_server_feature_drift_ks_critical",
            "The KS statistic above which the feature has drifted: the critical value at the "
            "retraining policy's drift_alpha over the features (Bonferroni), for this window.",
            [*versioned, "feature"],
        )
        window = gauge(
            "model_server_drift_window_size",
            "Validated inputs in the version's drift window.",
            versioned,
        )
        r2 = gauge("model_server_live_r2", "R² of the newest predictions with feedback.", versioned)
        rmse = gauge(
            "model_server_live_rmse",
            "RMSE ($100,000) of the newest predictions with feedback.",
            versioned,
        )
        mae = gauge(
            "model_server_live_mae",
            "MAE ($100,000) of the newest predictions with feedback.",
            versioned,
        )
        samples = gauge(
            "model_server_live_feedback_samples",
            "Predictions with feedback that live error is computed over.",
            versioned,
        )
        coverage = gauge(
            "model_server_feedback_coverage",
            "Share of the newest predictions that have feedback.",
            versioned,
        )
        offline = gauge(
            "model_server_model_offline_r2",
            "Test R² of the version, from its registry tag test_r2.",
            versioned,
        )
        for v in signals.versions:
            labels = [name, v.version]
            window.add_metric(labels, v.window)
            for feature, (psi_value, ks_value) in v.drift.items():
                psi.add_metric([*labels, feature], psi_value)
                ks.add_metric([*labels, feature], ks_value)
            for feature, critical in v.ks_critical.items():
                ks_critical.add_metric([*labels, feature], critical)
            samples.add_metric(labels, v.feedback_samples)
            if v.live is not None:
                r2.add_metric(labels, v.live["r2"])
                rmse.add_metric(labels, v.live["rmse"])
                mae.add_metric(labels, v.live["mae"])
            if v.coverage is not None:
                coverage.add_metric(labels, v.coverage)
            if v.offline_r2 is not None:
                offline.add_metric(labels, v.offline_r2)
        yield from (psi, ks, ks_critical, window, r2, rmse, mae, samples, coverage, offline)

        running = gauge(
            "model_server_retrain_running",
            "1 while a retraining run holds the lease in the serving database.",
            ["model_name"],
        )
        last_success = gauge(
            "model_server_retrain_last_success_timestamp_seconds",
            "When the newest retraining run that reached a verdict (promoted or not) finished.",
            ["model_name"],
        )
        last_decision = gauge(
            "model_server_retrain_last_decision_timestamp_seconds",
            "When the newest retraining decision (taken or skipped) was made.",
            ["model_name"],
        )
        decisions = gauge(
            "model_server_retrain_decisions",
            "Recorded retraining decisions by outcome.",
            ["model_name", "outcome"],
        )
        unpromoted = gauge(
            "model_server_retrain_last_go_unpromoted",
            "1 if the newest run that went and finished did not end promoted.",
            ["model_name"],
        )
        policy = gauge(
            "model_server_retrain_policy",
            "The retraining policy in force, by setting (drift_threshold, r2_floor, "
            "degradation_margin, min_feedback, ...; enabled is 0 or 1): what the alerts compare "
            "the live signals with.",
            ["model_name", "setting"],
        )
        retrain = signals.retrain
        if retrain is not None:
            running.add_metric([name], float(retrain.running))
            if retrain.last_success is not None:
                last_success.add_metric([name], retrain.last_success)
            if retrain.last_decision is not None:
                last_decision.add_metric([name], retrain.last_decision)
            counts = dict.fromkeys(DECISION_OUTCOMES, 0) | dict(retrain.decisions)
            for outcome, count in sorted(counts.items()):
                decisions.add_metric([name, outcome], count)
            unpromoted.add_metric([name], float(retrain.last_go_unpromoted))
            for setting, value in sorted(retrain.policy.items()):
                policy.add_metric([name, setting], float(value))
        yield from (running, last_success, last_decision, decisions, unpromoted, policy)


class ServerMetrics:
    """The server's metrics for one model name; methods take the version that did the work."""

    def __init__(self, model_name: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.model_name = model_name
        self.requests = Counter(
            "model_server_requests",
            "Inference requests by protocol and HTTP status.",
            ["model_name", "model_version", "protocol", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "model_server_request_latency_seconds",
            "Latency of successful inference requests, from the first byte read to the result.",
            ["model_name", "model_version", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # (version, protocol) -> the two children request_succeeded updates; never cleared,
        # as these two metrics never are.
        self._succeeded: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.prediction_value = ValueHistogram(
            "model_server_prediction_value",
            "Predicted median house values (units of $100,000), one observation per instance.",
            model_name,
            VALUE_BUCKETS,
        )
        registry.register(self.prediction_value)
        self.model_info = Gauge(
            "model_server_model_info",
            "The model version being served (value 1), its training run and inference backend.",
            ["model_name", "model_version", "run_id", "backend"],
            registry=registry,
        )
        self.model_ready = Gauge(
            "model_server_model_ready",
            "1 when a model is loaded and served, else 0.",
            ["model_name"],
            registry=registry,
        )
        self.inflight = Gauge(
            "model_server_inflight_requests",
            "Inference requests being processed.",
            ["model_name"],
            registry=registry,
        )
        self.alias_polls = Counter(
            "model_server_alias_polls",
            "Looks at the registry alias, failed or not (each watcher's: the champion's and, "
            "with a challenger mode, the challenger's).",
            ["model_name"],
            registry=registry,
        )
        self.alias_poll_failures = Counter(
            "model_server_alias_poll_failures",
            "Failed looks at the registry alias (MLflow unreachable or erroring).",
            ["model_name"],
            registry=registry,
        )
        self.access_refusals = Counter(
            "model_server_access_refusals",
            "Requests refused by access control, by kind (missing_key, unknown_key, forbidden: "
            "401/403; rate_limited: 429).",
            ["model_name", "kind"],
            registry=registry,
        )
        self.model_loads = Counter(
            "model_server_model_loads",
            "Model loads by outcome (success, failure).",
            ["model_name", "outcome"],
            registry=registry,
        )
        self.feedback = Counter(
            "model_server_feedback",
            "Ground-truth values received on /feedback (labelled with the version then served).",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.challenger_info = Gauge(
            "model_server_challenger_info",
            "The challenger version loaded beside the champion (value 1), and how it is used "
            "(mode shadow or canary).",
            ["model_name", "model_version", "run_id", "backend", "mode"],
            registry=registry,
        )
        self.shadow_predictions = Counter(
            "model_server_shadow_predictions",
            "Requests the challenger predicted in shadow, by outcome (ok; refused by its "
            "contract; failed).",
            ["model_name", "model_version", "outcome"],
            registry=registry,
        )
        self.signals = SignalsCollector(model_name)
        registry.register(self.signals)
        self.prediction_log = PredictionLogCollector(model_name)
        registry.register(self.prediction_log)
        self.model_ready.labels(model_name).set(0)
        self.inflight.labels(model_name).set(0)
        for outcome in ("success", "failure"):
            self.model_loads.labels(model_name, outcome)
        self.alias_polls.labels(model_name)
        self.alias_poll_failures.labels(model_name)

    def request_succeeded(
        self, version: str, protocol: str, seconds: float, values: np.ndarray
    ) -> None:
        self.requests_succeeded(version, [(protocol, seconds)], values)

    def requests_succeeded(
        self, version: str, answered: Sequence[tuple[str, float]], values: np.ndarray
    ) -> None:
        """Requests `version` answered, each (protocol, seconds), and all their predictions."""
        for protocol, seconds in answered:
            children = self._succeeded.get((version, protocol))
            if children is None:  # looked up once per version and protocol (~2 us each time)
                children = self._succeeded[(version, protocol)] = (
                    self.requests.labels(self.model_name, version, protocol, "200"),
                    self.latency.labels(self.model_name, version, protocol),
                )
            children[0].inc()
            children[1].observe(seconds)
        self.prediction_value.observe(version, values)

    def request_failed(self, version: str, protocol: str, status: int) -> None:
        self.requests.labels(self.model_name, version, protocol, str(status)).inc()

    def model_swapped(self, version: str, run_id: str, backend: str) -> None:
        # Only the served version is 1: drop the previous one's series.
        self.model_info.clear()
        self.model_info.labels(self.model_name, version, run_id, backend).set(1)
        self.model_ready.labels(self.model_name).set(1)

    def challenger_swapped(self, version: str, run_id: str, backend: str, mode: str) -> None:
        self.challenger_info.clear()
        self.challenger_info.labels(self.model_name, version, run_id, backend, mode).set(1)

    def challenger_withdrawn(self) -> None:
        self.challenger_info.clear()

    def shadow_predicted(
        self, version: str, outcome: str, values: np.ndarray | None = None
    ) -> None:
        self.shadow_predictions.labels(self.model_name, version, outcome).inc()
        if values is not None:
            self.prediction_value.observe(version, values)

    def publish_signals(self, signals: Signals) -> None:
        self.signals.signals = signals  # one reference: a scrape sees the old set or the new

    def model_unloaded(self) -> None:
        self.model_ready.labels(self.model_name).set(0)

    def load_finished(self, ok: bool) -> None:
        self.model_loads.labels(self.model_name, "success" if ok else "failure").inc()

    def polled(self) -> None:
        self.alias_polls.labels(self.model_name).inc()

    def poll_failed(self) -> None:
        self.alias_poll_failures.labels(self.model_name).inc()

    def feedback_received(self, version: str) -> None:
        self.feedback.labels(self.model_name, version).inc()

    def refusal_counter(self, kinds: Iterable[str]) -> Callable[[str], None]:
        """Counts access refusals by kind; every kind is exported from 0 on (rate() needs it)."""
        children = {kind: self.access_refusals.labels(self.model_name, kind) for kind in kinds}
        return lambda kind: children[kind].inc()

    def track_inflight(self) -> Gauge:
        return self.inflight.labels(self.model_name)

    def watch_writer(self, writer: LogWriterState) -> None:
        self.prediction_log.writer = writer
