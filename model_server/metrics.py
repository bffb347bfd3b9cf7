"""Every Prometheus metric of the server, with one label vocabulary: model_name, model_version.

Names are a contract with the dashboards and alert rules: change them only together.
The metrics are created when the server starts (into the default registry, next to KServe's
own), or into a private registry in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Seconds: a one-row request takes about a millisecond, a 1000-row batch tens of them.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Units of $100,000; the training target is capped at 5.00001.
VALUE_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0)


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
        self.prediction_value = Histogram(
            "model_server_prediction_value",
            "Predicted median house values (units of $100,000), one observation per instance.",
            ["model_name", "model_version"],
            buckets=VALUE_BUCKETS,
            registry=registry,
        )
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
        self.alias_poll_failures = Counter(
            "model_server_alias_poll_failures",
            "Failed looks at the registry alias (MLflow unreachable or erroring).",
            ["model_name"],
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
        self.log_backlog = Gauge(
            "model_server_prediction_log_backlog",
            "Prediction records accepted but not yet written to the serving database.",
            ["model_name"],
            registry=registry,
        )
        self.model_ready.labels(model_name).set(0)
        self.inflight.labels(model_name).set(0)
        for outcome in ("success", "failure"):
            self.model_loads.labels(model_name, outcome)
        self.alias_poll_failures.labels(model_name)

    def request_succeeded(
        self, version: str, protocol: str, seconds: float, values: Iterable[float]
    ) -> None:
        self.requests.labels(self.model_name, version, protocol, "200").inc()
        self.latency.labels(self.model_name, version, protocol).observe(seconds)
        histogram = self.prediction_value.labels(self.model_name, version)
        for value in values:
            histogram.observe(value)

    def request_failed(self, version: str, protocol: str, status: int) -> None:
        self.requests.labels(self.model_name, version, protocol, str(status)).inc()

    def model_swapped(self, version: str, run_id: str, backend: str) -> None:
        # Only the served version is 1: drop the previous one's series.
        self.model_info.clear()
        self.model_info.labels(self.model_name, version, run_id, backend).set(1)
        self.model_ready.labels(self.model_name).set(1)

    def model_unloaded(self) -> None:
        self.model_ready.labels(self.model_name).set(0)

    def load_finished(self, ok: bool) -> None:
        self.model_loads.labels(self.model_name, "success" if ok else "failure").inc()

    def poll_failed(self) -> None:
        self.alias_poll_failures.labels(self.model_name).inc()

    def feedback_received(self, version: str) -> None:
        self.feedback.labels(self.model_name, version).inc()

    def track_inflight(self) -> Gauge:
        return self.inflight.labels(self.model_name)

    def watch_backlog(self, backlog: Callable[[], int]) -> None:
        self.log_backlog.labels(self.model_name).set_function(lambda: float(backlog()))
