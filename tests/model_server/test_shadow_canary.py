"""@challenger beside @champion on a real server: shadow (answer with the champion, log both)
and canary (a share of the requests, sticky by key); and the closed loop's tail: live error
from feedback says the challenger is better, `training_job promote-challenger` moves
@champion, and the running server serves the new version without a restart.

Each test works on its own copy of the session's registry, with the decision tree candidate
registered as a second version.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score

from tests.support.server import (
    FEATURES,
    MODEL,
    REPO,
    ROWS,
    ServerProcess,
    copy_registry,
    mlflow_client,
    register_candidate,
    sample,
    samples,
    start_server,
    wait_for,
)

V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"
CANARY_PERCENT = 30.0


@pytest.fixture(scope="module")
def test_rows(trained_registry: Any) -> pd.DataFrame:
    return pd.read_parquet(trained_registry.workspace / "data" / "prepared" / "test.parquet")


def registry_with_tree(trained_registry: Any, folder: Path) -> tuple[str, str]:
    """A private registry: version 1 (the pipeline's champion, gradient boosting) and the
    decision tree candidate as a new version; (tracking URI, tree version)."""
    uri = copy_registry(trained_registry.state_dir / "mlflow.db", folder)
    return uri, register_candidate(uri, "decision_tree")


def shadow_rows(server: ServerProcess) -> list[dict[str, Any]]:
    return server.rows("shadow_of IS NOT NULL")


def v2_body(rows: np.ndarray, **parameters: str) -> dict[str, Any]:
    tensor = {"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
    return {"inputs": [tensor], **({"parameters": parameters} if parameters else {})}


def test_shadow_then_the_challenger_wins_on_live_error_and_is_served_without_restart(
    trained_registry: Any, candidates: dict[str, Any], test_rows: pd.DataFrame, tmp_path: Path
) -> None:
    uri, tree = registry_with_tree(trained_registry, tmp_path / "registry")
    client = mlflow_client(uri)
    # The worse model serves; the better one is the challenger.
    client.set_registered_model_alias(MODEL, "champion", tree)
    client.set_registered_model_alias(MODEL, "challenger", "1")
    rows = test_rows.sample(150, random_state=5)
    x = rows[list(FEATURES)].to_numpy()
    actual = rows["MedHouseVal"].to_numpy()
    tree_says = candidates["decision_tree"].predict(rows[list(FEATURES)])
    boosting_says = candidates["lightgbm"].predict(rows[list(FEATURES)])
    labelled = 120
    # The premise of the promotion below, on these very rows.
    assert r2_score(actual[:labelled], boosting_says[:labelled]) > 0.1 + r2_score(
        actual[:labelled], tree_says[:labelled]
    )

    server = start_server(
        tmp_path / "server", uri, challenger_mode="shadow", signals_interval_seconds="0.3"
    )
    try:
        server.wait_ready()
        wait_for(
            lambda: (server.get("/health").json()["challenger"] or {}).get("model_version") == "1",
            90,
            "the challenger to load",
        )
        health = server.get("/health").json()
        assert health["model_version"] == tree and health["challenger_mode"] == "shadow"

        # Answers come from the champion alone, in both protocols.
        ids: list[str] = []
        for part in (slice(0, 50), slice(50, 100)):
            response = server.post(V1, json={"instances": x[part].tolist()})
            assert response.status_code == 200, response.text
            assert response.json()["model_version"] == tree == response.headers["x-model-version"]
            np.testing.assert_allclose(response.json()["predictions"], tree_says[part], atol=1e-4)
            ids += response.json()["prediction_ids"]
        response = server.post(V2, json=v2_body(x[100:]))
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == tree
        [ids_out] = [o for o in response.json()["outputs"] if o["name"] == "prediction_id"]
        ids += ids_out["data"]

        # Feedback for the served predictions reaches the challenger's shadows of them.
        with server.client() as http:
            for prediction_id, truth in zip(ids[:labelled], actual[:labelled], strict=True):
                answer = http.post(
                    "/feedback", json={"prediction_id": prediction_id, "actual": float(truth)}
                )
                assert answer.status_code == 200, answer.text
        wait_for(lambda: len(shadow_rows(server)) == len(ids), 10, "every shadow row")
        shadows = {row["shadow_of"]: row for row in shadow_rows(server)}
        assert set(shadows) == set(ids)
        served = {row["id"]: row for row in server.rows(f"model_version = '{tree}'")}
        for k, prediction_id in enumerate(ids):
            shadow, original = shadows[prediction_id], served[prediction_id]
            assert shadow["model_version"] == "1" and shadow["id"] != prediction_id
            assert shadow["request_id"] == original["request_id"]
            assert shadow["protocol"] == original["protocol"]
            assert shadow["inputs"] == original["inputs"]
            assert shadow["output"] == pytest.approx(boosting_says[k], abs=1e-4)
            assert (shadow["actual"] is not None) == (k < labelled)
        # Shadows answered nobody: not in the request counts.
        assert server.get("/metrics/summary").json()["ok"] == len(ids)

        # Per-version metrics side by side.
        def live(version: str, name: str) -> float | None:
            return sample(server.get("/metrics").text, name, model_version=version)

        wait_for(
            lambda: (
                live("1", "model_server_live_feedback_samples") == labelled
                and live(tree, "model_server_live_feedback_samples") == labelled
            ),
            30,
            "live error of both versions",
        )
        champion_r2 = live(tree, "model_server_live_r2")
        challenger_r2 = live("1", "model_server_live_r2")
        assert champion_r2 == pytest.approx(r2_score(actual[:labelled], tree_says[:labelled]))
        assert challenger_r2 == pytest.approx(
            r2_score(actual[:labelled], boosting_says[:labelled]), abs=1e-6
        )
        text = server.get("/metrics").text
        assert sample(text, "model_server_drift_window_size", model_version="1") == len(ids)
        assert sample(text, "model_server_drift_window_size", model_version=tree) == len(ids)
        assert (
            sample(text, "model_server_shadow_predictions_total", model_version="1", outcome="ok")
            == 3
        )
        [(info, value)] = samples(text, "model_server_challenger_info")
        assert info["model_version"] == "1" and info["mode"] == "shadow" and value == 1
        assert {s["model_version"] for s, _ in samples(text, "model_server_requests_total")} == {
            tree
        }

        # The decision: the policy is set through the API, the job reads it and compares.
        policy = server.post("/retrain/config", json={"min_feedback": 100})
        assert policy.status_code == 200, policy.text
        promoted = promote_challenger(uri, server, tmp_path / "job")
        assert promoted["outcome"] == "promoted", promoted
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
        [decision] = server.get("/retrain/logs/1").json()
        assert decision["source"] == "live_comparison" and decision["outcome"] == "promoted"
        assert decision["model_version"] == "1" and decision["go"]
        assert any(">= champion version" in r for r in decision["reasons"]), decision

        # Scenario 3's tail: the running server follows @champion, no restart.
        server.wait_version("1")
        assert server.get("/health").json()["challenger"] is None  # now the champion itself
        before = len(shadow_rows(server))
        response = server.post(V1, json={"instances": [list(ROWS[0])]})
        assert response.json()["model_version"] == "1" == response.headers["x-model-version"]
        [new_id] = response.json()["prediction_ids"]
        server.post("/feedback", json={"prediction_id": new_id, "actual": 4.0})  # flushes
        assert len(shadow_rows(server)) == before  # no shadow of a version by itself
        wait_for(
            lambda: (
                sample(
                    server.get("/metrics").text,
                    "model_server_retrain_decisions",
                    outcome="promoted",
                )
                == 1
            ),
            10,
            "the decision gauge",
        )
    finally:
        assert server.stop() == 0, server.log()[-3000:]


def promote_challenger(uri: str, server: ServerProcess, state: Path) -> dict[str, Any]:
    from tests.support.pipeline import pipeline_env, run_training_job

    env = pipeline_env(state, uri) | {
        "TRAINING_SERVING_DATABASE_URL": f"sqlite:///{server.database}"
    }
    result = run_training_job("promote-challenger", env=env, cwd=REPO)
    return dict(json.loads(result.stdout))


def key_share(key: str) -> float:
    """The documented canary rule, written again here: SHA-256 of the key, first 8 bytes."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) / 2**64 * 100


def test_canary_sends_a_share_to_the_challenger_sticky_by_key(
    trained_registry: Any, candidates: dict[str, Any], tmp_path: Path
) -> None:
    uri, tree = registry_with_tree(trained_registry, tmp_path / "registry")
    mlflow_client(uri).set_registered_model_alias(MODEL, "challenger", tree)
    frame = pd.DataFrame([ROWS[0]], columns=FEATURES)
    expected = {
        "1": candidates["lightgbm"].predict(frame)[0],
        tree: candidates["decision_tree"].predict(frame)[0],
    }
    server = start_server(
        tmp_path / "server",
        uri,
        challenger_mode="canary",
        canary_percent=str(CANARY_PERCENT),
    )
    try:
        server.wait_ready()
        wait_for(
            lambda: (server.get("/health").json()["challenger"] or {}).get("model_version") == tree,
            90,
            "the challenger to load",
        )
        with server.client() as http:

            def answer(headers: dict[str, str] | None = None, v2: dict[str, str] | None = None):
                if v2 is None:
                    response = http.post(V1, json={"instances": [list(ROWS[0])]}, headers=headers)
                    value = response.json()["predictions"][0]
                else:
                    response = http.post(V2, json=v2_body(np.array([ROWS[0]]), **v2))
                    [out] = [o for o in response.json()["outputs"] if o["name"] == "predict"]
                    value = out["data"][0]
                assert response.status_code == 200, response.text
                version = response.json()["model_version"]
                assert version == response.headers["x-model-version"]
                assert value == pytest.approx(expected[version], abs=1e-4)
                return version

            # Without a key: about CANARY_PERCENT of the requests (binomial, n=200: the
            # bounds are more than 4 standard deviations away).
            versions = [answer() for _ in range(200)]
            share = versions.count(tree) / len(versions)
            assert 0.15 <= share <= 0.45, share
            assert set(versions) == {"1", tree}

            # With a key: always the same way, by header or v2 parameter, as the rule says.
            keys = [f"customer-{i}" for i in range(30)]
            routed = {key: tree if key_share(key) < CANARY_PERCENT else "1" for key in keys}
            assert set(routed.values()) == {"1", tree}
            for key in keys:
                assert answer(headers={"X-Request-Key": key}) == routed[key], key
                assert answer(headers={"X-Request-Key": key}) == routed[key], key
                assert answer(v2={"request_key": key}) == routed[key], key

        text = server.get("/metrics").text
        [(info, _)] = samples(text, "model_server_challenger_info")
        assert info["mode"] == "canary" and info["model_version"] == tree
        served = {s["model_version"] for s, _ in samples(text, "model_server_requests_total")}
        assert served == {"1", tree}
    finally:
        assert server.stop() == 0, server.log()[-3000:]
    assert shadow_rows(server) == []  # canary answers: nothing is a shadow
    by_version = {row["model_version"] for row in server.rows("status = 200")}
    assert by_version == {"1", tree}
