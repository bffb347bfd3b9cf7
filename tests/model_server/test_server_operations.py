"""The operational API kept from the old system, the OpenAPI document, feedback, and the
Prometheus exposition (names and labels are a contract with dashboards and alerts)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.server import MODEL, ROWS, SWAPPING_BACKENDS, ServerProcess, wait_for

V1 = f"/v1/models/{MODEL}:predict"


@pytest.fixture(scope="module")
def client(served: ServerProcess) -> httpx.Client:
    with served.client() as http:
        yield http


def predict(client: httpx.Client, rows: int = 1) -> list[str]:
    response = client.post(V1, json={"instances": [list(ROWS[0])] * rows})
    assert response.status_code == 200, response.text
    return list(response.json()["prediction_ids"])


def test_health(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok" and health["ready"] is True
    assert health["model_name"] == MODEL and health["model_version"] == "1"
    # ONNX first, then the compiled trees once verified (the cache is shared: often at once).
    assert health["backend"] in SWAPPING_BACKENDS and health["onnx_refused"] is None
    assert health["compiled_refused"] is None
    assert health["run_id"] and health["loaded_at"]
    assert health["uptime_seconds"] > 0


def test_every_route_is_in_the_openapi_document(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/health",
        "/logs/{limit}",
        "/metrics/summary",
        "/feedback",
        "/metrics",
        "/v1/models/{model_name}",
        "/v1/models/{model_name}:predict",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/infer",
    ):
        assert path in paths, path


def test_feedback_right_after_the_prediction(client: httpx.Client) -> None:
    [prediction_id] = predict(client)
    # Sent at once, before the writer's next batch: the server commits what is queued first.
    response = client.post("/feedback", json={"prediction_id": prediction_id, "actual": 4.5})
    assert response.status_code == 200, response.text
    assert response.json() == {"prediction_id": prediction_id, "actual": 4.5, "recorded": True}
    logged = {row["id"]: row for row in client.get("/logs/50").json()}
    assert logged[prediction_id]["actual"] == 4.5


def test_feedback_for_an_unknown_prediction_is_404(client: httpx.Client) -> None:
    response = client.post("/feedback", json={"prediction_id": "no-such-id", "actual": 1.0})
    assert response.status_code == 404
    assert "no-such-id" in response.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"prediction_id": "x", "actual": "2.5"},
        {"prediction_id": "x", "actual": True},
        {"prediction_id": "x", "actual": -1.0},
        {"prediction_id": "x", "actual": None},
        {"prediction_id": "x"},
        {"actual": 2.0},
        {"prediction_id": "", "actual": 2.0},
    ],
)
def test_feedback_with_a_bad_value_is_4xx(client: httpx.Client, body: dict[str, object]) -> None:
    response = client.post("/feedback", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]


@pytest.mark.parametrize("raw", [b'{"prediction_id": "x", "actual": NaN}', b'{"prediction_id": '])
def test_feedback_with_bad_json_is_4xx(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/feedback", content=raw, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text


def test_logs_are_the_newest_predictions(client: httpx.Client) -> None:
    ids = predict(client, rows=3)
    client.post("/feedback", json={"prediction_id": ids[0], "actual": 1.0})  # commits the queue
    rows = client.get("/logs/3").json()
    assert {r["id"] for r in rows} == set(ids)
    row = rows[0]
    assert row["model_version"] == "1" and row["protocol"] == "v1" and row["status"] == 200
    assert set(row["inputs"]) == {
        "MedInc", "HouseAge", "AveRooms", "AveBedrms",
        "Population", "AveOccup", "Latitude", "Longitude",
    }  # fmt: skip
    assert isinstance(row["output"], float) and row["latency_ms"] > 0


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "100001"])
def test_logs_limit_is_checked(client: httpx.Client, limit: str) -> None:
    assert client.get(f"/logs/{limit}").status_code == 422


def test_metrics_summary(client: httpx.Client) -> None:
    predict(client)
    client.post(V1, json={"instances": []})  # one failure
    ids = predict(client)
    client.post("/feedback", json={"prediction_id": ids[0], "actual": 2.0})  # commits the queue
    summary = client.get("/metrics/summary").json()
    assert summary["model_name"] == MODEL and summary["model_version"] == "1"
    assert summary["uptime_seconds"] > 0
    assert summary["ok"] >= 2 and summary["errors"] >= 1
    assert summary["total"] == summary["ok"] + summary["errors"]
    assert 0 < summary["success_rate"] < 1
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}
    assert summary["latency_ms"]["p50"] > 0
    assert "v1" in summary["by_protocol"]


EXPECTED_SERIES = {
    "model_server_requests_total": {"model_name", "model_version", "protocol", "status"},
    "model_server_request_latency_seconds_bucket": {
        "model_name",
        "model_version",
        "protocol",
        "le",
    },
    "model_server_prediction_value_bucket": {"model_name", "model_version", "le"},
    "model_server_model_info": {"model_name", "model_version", "run_id", "backend"},
    "model_server_model_ready": {"model_name"},
    "model_server_inflight_requests": {"model_name"},
    "model_server_alias_poll_failures_total": {"model_name"},
    "model_server_model_loads_total": {"model_name", "outcome"},
    "model_server_feedback_total": {"model_name", "model_version"},
    "model_server_prediction_log_backlog": {"model_name"},
    "model_server_prediction_log_spilled_backlog": {"model_name"},
    "model_server_prediction_log_written_rows_total": {"model_name"},
    "model_server_prediction_log_dropped_rows_total": {"model_name"},
}


def series(text: str) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for name, labels in re.findall(r"^(\w+)\{([^}]*)\} \S+$", text, re.M):
        found.setdefault(name, []).append(dict(re.findall(r'(\w+)="([^"]*)"', labels)))
    return found


def test_prometheus_names_and_labels(client: httpx.Client) -> None:
    [prediction_id] = predict(client)
    client.post("/feedback", json={"prediction_id": prediction_id, "actual": 3.0})
    text = client.get("/metrics").text
    found = series(text)
    for name, labels in EXPECTED_SERIES.items():
        assert name in found, name
        assert all(set(s) == labels for s in found[name]), (name, found[name])
    [info] = found["model_server_model_info"]
    assert info["model_version"] == "1" and info["backend"] in SWAPPING_BACKENDS
    assert ('model_server_model_ready{model_name="california-housing"} 1.0') in text
    ok = [s for s in found["model_server_requests_total"] if s["status"] == "200"]
    assert {s["protocol"] for s in ok} >= {"v1"}
    # KServe's own metrics are still exposed next to ours.
    assert "request_predict_seconds_bucket" in found


def test_inflight_gauge_returns_to_zero(served: ServerProcess) -> None:
    """Requests of every ending (answered, refused, concurrent) leave the gauge at 0: sent here,
    so that the test can fail whatever ran before it (at the start, 0 proves nothing)."""

    def one(index: int) -> int:
        with served.client() as http:
            row = list(ROWS[0]) if index % 3 else ["not a number", *ROWS[0][1:]]
            return http.post(V1, json={"instances": [row] * (1 + index % 5)}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(24)))
    assert set(statuses) == {200, 400}, statuses

    def idle() -> bool:
        text = served.get("/metrics").text
        return 'model_server_inflight_requests{model_name="california-housing"} 0.0' in text

    wait_for(idle, 10, "no request in flight")
