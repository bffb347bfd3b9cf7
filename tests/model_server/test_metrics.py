"""The metrics module: one label vocabulary, the names the dashboards use, swaps."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from model_server.metrics import (
    SMALL_OBSERVATION,
    VALUE_BUCKETS,
    ServerMetrics,
    ValueHistogram,
)


class WriterState:
    backlog = 7
    spilled = 2
    spilled_bytes = 1000
    spill_max_bytes = 9000
    written_total = 100
    spilled_total = 5
    rejected_total = 1
    dropped_total = 3


def test_names_and_label_sets() -> None:
    registry = CollectorRegistry()
    metrics = ServerMetrics("m", registry)
    metrics.request_succeeded("3", "v1", 0.01, np.array([1.5, 2.5]))
    metrics.request_failed("3", "v2", 400)
    metrics.model_swapped("3", "run", "onnxruntime")
    metrics.feedback_received("3")
    metrics.poll_failed()
    metrics.load_finished(ok=True)
    metrics.watch_writer(WriterState())
    value = registry.get_sample_value
    assert (
        value(
            "model_server_requests_total",
            {"model_name": "m", "model_version": "3", "protocol": "v1", "status": "200"},
        )
        == 1
    )
    assert (
        value(
            "model_server_requests_total",
            {"model_name": "m", "model_version": "3", "protocol": "v2", "status": "400"},
        )
        == 1
    )
    assert (
        value(
            "model_server_request_latency_seconds_count",
            {"model_name": "m", "model_version": "3", "protocol": "v1"},
        )
        == 1
    )
    assert (
        value("model_server_prediction_value_count", {"model_name": "m", "model_version": "3"}) == 2
    )
    assert (
        value("model_server_prediction_value_sum", {"model_name": "m", "model_version": "3"}) == 4.0
    )
    assert (
        value(
            "model_server_model_info",
            {"model_name": "m", "model_version": "3", "run_id": "run", "backend": "onnxruntime"},
        )
        == 1
    )
    assert value("model_server_model_ready", {"model_name": "m"}) == 1
    assert value("model_server_feedback_total", {"model_name": "m", "model_version": "3"}) == 1
    assert value("model_server_alias_poll_failures_total", {"model_name": "m"}) == 1
    assert value("model_server_model_loads_total", {"model_name": "m", "outcome": "success"}) == 1
    assert value("model_server_model_loads_total", {"model_name": "m", "outcome": "failure"}) == 0
    assert value("model_server_prediction_log_backlog", {"model_name": "m"}) == 7
    assert value("model_server_prediction_log_spilled_backlog", {"model_name": "m"}) == 2
    assert value("model_server_prediction_log_spill_bytes", {"model_name": "m"}) == 1000
    assert value("model_server_prediction_log_spill_limit_bytes", {"model_name": "m"}) == 9000
    assert value("model_server_prediction_log_written_rows_total", {"model_name": "m"}) == 100
    assert value("model_server_prediction_log_spilled_rows_total", {"model_name": "m"}) == 5
    assert value("model_server_prediction_log_rejected_rows_total", {"model_name": "m"}) == 1
    assert value("model_server_prediction_log_dropped_rows_total", {"model_name": "m"}) == 3
    assert value("model_server_inflight_requests", {"model_name": "m"}) == 0


def test_a_swap_leaves_one_info_series() -> None:
    registry = CollectorRegistry()
    metrics = ServerMetrics("m", registry)
    metrics.model_swapped("1", "a", "onnxruntime")
    metrics.model_swapped("2", "b", "sklearn")
    info = [
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("model_server_model_info{")
    ]
    assert info == [
        'model_server_model_info{backend="sklearn",model_name="m",model_version="2",run_id="b"} 1.0'
    ]


def test_not_ready_until_a_model_is_swapped_in() -> None:
    registry = CollectorRegistry()
    ServerMetrics("m", registry)
    assert registry.get_sample_value("model_server_model_ready", {"model_name": "m"}) == 0


def test_signals_are_exported_as_one_set_per_served_version() -> None:
    from model_server.metrics import RetrainSignals, Signals, VersionSignals

    registry = CollectorRegistry()
    metrics = ServerMetrics("m", registry)
    value = registry.get_sample_value
    # Before the first computation: no series at all.
    assert value("model_server_retrain_running", {"model_name": "m"}) is None
    metrics.publish_signals(
        Signals(
            versions=(
                VersionSignals(
                    "3",
                    window=10,
                    drift={"Latitude": (0.31, 0.2)},
                    feedback_samples=8,
                    live={"r2": 0.8, "rmse": 0.5, "mae": 0.3},
                    coverage=0.25,
                    offline_r2=0.84,
                ),
                VersionSignals("4", window=0),
            ),
            retrain=RetrainSignals(
                running=True,
                decisions={"promoted": 2},
                last_decision=1000.0,
                last_success=900.0,
                last_go_unpromoted=False,
                policy={"drift_threshold": 0.25, "enabled": 1.0},
            ),
        )
    )
    v3 = {"model_name": "m", "model_version": "3"}
    assert value("model_server_feature_drift_psi", {**v3, "feature": "Latitude"}) == 0.31
    assert value("model_server_feature_drift_ks", {**v3, "feature": "Latitude"}) == 0.2
    assert value("model_server_drift_window_size", v3) == 10
    assert value("model_server_live_r2", v3) == 0.8
    assert value("model_server_live_rmse", v3) == 0.5
    assert value("model_server_live_mae", v3) == 0.3
    assert value("model_server_live_feedback_samples", v3) == 8
    assert value("model_server_feedback_coverage", v3) == 0.25
    assert value("model_server_model_offline_r2", v3) == 0.84
    v4 = {"model_name": "m", "model_version": "4"}
    assert value("model_server_drift_window_size", v4) == 0
    assert value("model_server_live_r2", v4) is None  # nothing to say: no series
    assert value("model_server_retrain_running", {"model_name": "m"}) == 1
    assert value("model_server_retrain_decisions", {"model_name": "m", "outcome": "promoted"}) == 2
    assert value("model_server_retrain_decisions", {"model_name": "m", "outcome": "failed"}) == 0
    setting = {"model_name": "m", "setting": "drift_threshold"}
    assert value("model_server_retrain_policy", setting) == 0.25
    assert value("model_server_retrain_last_success_timestamp_seconds", {"model_name": "m"}) == 900
    assert (
        value("model_server_retrain_last_decision_timestamp_seconds", {"model_name": "m"}) == 1000
    )
    assert value("model_server_retrain_last_go_unpromoted", {"model_name": "m"}) == 0

    # A new set replaces the old: version 3 is no longer served.
    metrics.publish_signals(Signals(versions=(VersionSignals("4", window=5),)))
    assert value("model_server_drift_window_size", v3) is None
    assert value("model_server_drift_window_size", v4) == 5


def test_challenger_info_and_shadow_counts() -> None:
    registry = CollectorRegistry()
    metrics = ServerMetrics("m", registry)
    metrics.challenger_swapped("4", "run", "onnxruntime", "shadow")
    metrics.shadow_predicted("4", "ok", np.array([1.0, 2.0]))
    metrics.shadow_predicted("4", "refused")
    value = registry.get_sample_value
    labels = {"model_name": "m", "model_version": "4"}
    info = {**labels, "run_id": "run", "backend": "onnxruntime", "mode": "shadow"}
    assert value("model_server_challenger_info", info) == 1
    assert value("model_server_shadow_predictions_total", {**labels, "outcome": "ok"}) == 1
    assert value("model_server_shadow_predictions_total", {**labels, "outcome": "refused"}) == 1
    assert value("model_server_prediction_value_count", labels) == 2
    metrics.challenger_withdrawn()
    assert value("model_server_challenger_info", info) is None


def test_value_histogram_buckets_are_prometheus_le() -> None:
    registry = CollectorRegistry()
    metrics = ServerMetrics("m", registry)
    # 0.25 and 0.5 are bucket bounds: a value equal to a bound counts in that bucket.
    metrics.request_succeeded("1", "v1", 0.01, np.array([0.25, 0.3, 0.5, 7.0]))
    metrics.request_succeeded("1", "v1", 0.01, np.array([0.1]))
    value = registry.get_sample_value
    labels = {"model_name": "m", "model_version": "1"}
    assert value("model_server_prediction_value_bucket", {**labels, "le": "0.25"}) == 2
    assert value("model_server_prediction_value_bucket", {**labels, "le": "0.5"}) == 4
    assert value("model_server_prediction_value_bucket", {**labels, "le": "6.0"}) == 4
    assert value("model_server_prediction_value_bucket", {**labels, "le": "+Inf"}) == 5
    assert value("model_server_prediction_value_count", labels) == 5
    assert value("model_server_prediction_value_sum", labels) == 8.15


def test_few_and_many_values_fill_the_same_buckets() -> None:
    """A request's few values are counted in Python, many with numpy: the same buckets,
    bounds, NaN and infinities included."""
    rng = np.random.default_rng(7)
    bounds = list(VALUE_BUCKETS)
    values = np.concatenate(
        [bounds, np.nextafter(bounds, 0), np.nextafter(bounds, 9), [np.nan, np.inf, -np.inf]]
    )
    values = np.concatenate([values, rng.uniform(-1, 8, 200)])
    few, many = (ValueHistogram("v", "d", "m", VALUE_BUCKETS) for _ in range(2))
    for start in range(0, len(values), SMALL_OBSERVATION):
        few.observe("1", values[start : start + SMALL_OBSERVATION])
    many.observe("1", values)
    assert len(values) > SMALL_OBSERVATION
    assert few._counts["1"].tolist() == many._counts["1"].tolist()
