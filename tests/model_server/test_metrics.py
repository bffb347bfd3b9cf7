"""The metrics module: one label vocabulary, the names the dashboards use, swaps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from model_server.metrics import ServerMetrics


def test_names_and_label_sets() -> None:
    registry = CollectorRegistry()
    metrics = ServerMetrics("m", registry)
    metrics.request_succeeded("3", "v1", 0.01, [1.5, 2.5])
    metrics.request_failed("3", "v2", 400)
    metrics.model_swapped("3", "run", "onnxruntime")
    metrics.feedback_received("3")
    metrics.poll_failed()
    metrics.load_finished(ok=True)
    metrics.watch_backlog(lambda: 7)
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
