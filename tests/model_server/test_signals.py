"""Live signals on a real server, from real rows: input drift of the recent window against the
model's profile (the loop issue's scenarios 1 and 2 at the server), live error from feedback,
feedback coverage, the offline R², and their label sets.

The tests of this module run in order on one server: each sends its own traffic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from tests.support.server import (
    FEATURES,
    MODEL,
    ServerProcess,
    mlflow_client,
    sample,
    samples,
    start_server,
    wait_for,
)

V1 = f"/v1/models/{MODEL}:predict"
WINDOW = 1000  # MODEL_SERVER_DRIFT_WINDOW's default
LIVE_WINDOW = 400
VERSIONED = {"model_name", "model_version"}


@pytest.fixture(scope="module")
def test_rows(trained_registry: Any) -> pd.DataFrame:
    """The held-out test split of the session's pipeline run: real block groups."""
    return pd.read_parquet(trained_registry.workspace / "data" / "prepared" / "test.parquet")


@pytest.fixture(scope="module")
def server(trained_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    process = start_server(
        tmp_path_factory.mktemp("signals"),
        trained_registry.tracking_uri,
        signals_interval_seconds="0.3",
        live_window=str(LIVE_WINDOW),
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def predict(server: ServerProcess, rows: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    response = server.post(V1, json={"instances": rows[list(FEATURES)].to_numpy().tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["prediction_ids"], np.array(body["predictions"])


def drift(server: ServerProcess, kind: str) -> dict[str, float]:
    """Feature -> the drift gauge `kind` (psi or ks) of version 1."""
    return {
        labels["feature"]: value
        for labels, value in samples(
            server.get("/metrics").text, f"model_server_feature_drift_{kind}"
        )
        if labels["model_version"] == "1"
    }


def window(server: ServerProcess) -> float | None:
    return sample(server.get("/metrics").text, "model_server_drift_window_size", model_version="1")


def test_scenario_1_iid_rows_do_not_drift(server: ServerProcess, test_rows: pd.DataFrame) -> None:
    predict(server, test_rows.sample(WINDOW, random_state=1))
    wait_for(lambda: window(server) == WINDOW, 30, "a full drift window")
    psi = drift(server, "psi")
    assert set(psi) == set(FEATURES)
    assert max(psi.values()) < 0.1, psi
    ks = drift(server, "ks")
    assert set(ks) == set(FEATURES) and all(0 <= v < 0.1 for v in ks.values()), ks


def test_scenario_2_southern_rows_drift_in_latitude_and_longitude(
    server: ServerProcess, test_rows: pd.DataFrame
) -> None:
    south = test_rows[test_rows["Latitude"] < 34.2].sample(WINDOW, random_state=2)
    predict(server, south)  # the window now holds only these

    def shifted() -> bool:
        psi = drift(server, "psi")
        return psi.get("Latitude", 0) > 0.2 and psi.get("Longitude", 0) > 0.2

    wait_for(shifted, 30, "Latitude and Longitude PSI above 0.2")
    psi = drift(server, "psi")
    assert psi["MedInc"] < 0.2, psi  # the shift is geographic
    assert window(server) == WINDOW


def test_live_error_and_coverage_from_feedback(
    server: ServerProcess, test_rows: pd.DataFrame, trained_registry: Any
) -> None:
    rows = test_rows.sample(LIVE_WINDOW, random_state=3)
    ids, predicted = predict(server, rows)
    actual = rows["MedHouseVal"].to_numpy()
    labelled = LIVE_WINDOW // 2
    with server.client() as client:
        for prediction_id, truth in zip(ids[:labelled], actual[:labelled], strict=True):
            response = client.post(
                "/feedback", json={"prediction_id": prediction_id, "actual": float(truth)}
            )
            assert response.status_code == 200, response.text

    def gauge(name: str) -> float | None:
        return sample(server.get("/metrics").text, name, model_version="1")

    wait_for(lambda: gauge("model_server_live_feedback_samples") == labelled, 30, "the live gauges")
    truth, answered = actual[:labelled], predicted[:labelled]
    assert gauge("model_server_live_r2") == pytest.approx(r2_score(truth, answered), abs=1e-9)
    assert gauge("model_server_live_rmse") == pytest.approx(
        root_mean_squared_error(truth, answered), abs=1e-9
    )
    assert gauge("model_server_live_mae") == pytest.approx(
        mean_absolute_error(truth, answered), abs=1e-9
    )
    # Among the newest LIVE_WINDOW predictions (this request's), half have feedback.
    assert gauge("model_server_feedback_coverage") == pytest.approx(0.5)
    tags = mlflow_client(trained_registry.tracking_uri).get_model_version(MODEL, "1").tags
    assert gauge("model_server_model_offline_r2") == pytest.approx(float(tags["test_r2"]))


def test_label_sets_of_the_signal_metrics(server: ServerProcess) -> None:
    text = server.get("/metrics").text
    expected = {
        "model_server_feature_drift_psi": VERSIONED | {"feature"},
        "model_server_feature_drift_ks": VERSIONED | {"feature"},
        "model_server_drift_window_size": VERSIONED,
        "model_server_live_r2": VERSIONED,
        "model_server_live_rmse": VERSIONED,
        "model_server_live_mae": VERSIONED,
        "model_server_live_feedback_samples": VERSIONED,
        "model_server_feedback_coverage": VERSIONED,
        "model_server_model_offline_r2": VERSIONED,
        "model_server_retrain_running": {"model_name"},
        "model_server_retrain_last_go_unpromoted": {"model_name"},
        "model_server_retrain_decisions": {"model_name", "outcome"},
        "model_server_retrain_policy": {"model_name", "setting"},
    }
    for name, labels in expected.items():
        found = samples(text, name)
        assert found, name
        assert all(set(s) == labels for s, _ in found), (name, found)
    # Nothing was decided on this database yet: counts at zero, no timestamps.
    assert all(v == 0 for _, v in samples(text, "model_server_retrain_decisions"))
    assert not samples(text, "model_server_retrain_last_success_timestamp_seconds")
    assert "# TYPE model_server_feature_drift_psi gauge" in text


def test_the_window_is_per_served_version() -> None:
    """The ring buffer keeps the newest rows of each version, oldest overwritten first."""
    from model_server.signals import InputWindows

    windows = InputWindows(size=5)
    windows.add("1", np.arange(6, dtype=float).reshape(3, 2))
    windows.add("1", np.arange(6, 12, dtype=float).reshape(3, 2))
    windows.add("2", np.ones((1, 2)))
    assert windows.snapshot("1").tolist() == [[2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    windows.add("1", np.arange(100, 114, dtype=float).reshape(7, 2))
    assert windows.snapshot("1")[:, 0].tolist() == [104, 106, 108, 110, 112]
    windows.keep({"1"})
    assert windows.snapshot("2").size == 0
