"""The server's life with a registry that changes: started before any champion (live, not
ready), ready when one is promoted, hot swap under concurrent load when @champion moves, every
request logged and flushed on SIGTERM; and a real MLflow server that is down at start (live,
not ready, then ready when it comes up) or goes away while the server serves.

These tests change the registry: they work on a private copy of the session's store.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from tests.support.records import TcpProxy
from tests.support.server import (
    FEATURES,
    MODEL,
    ROWS,
    ClientThreads,
    ServerProcess,
    copy_registry,
    free_port,
    mlflow_client,
    register_candidate,
    start_server,
    wait_for,
)
from tests.support.servers import mlflow_server

V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"


def not_ready(server: ServerProcess) -> None:
    assert server.get("/v2/health/live").status_code == 200
    assert server.get("/v2/health/ready").status_code == 503
    assert server.get(f"/v1/models/{MODEL}").status_code == 503
    assert server.get("/health").status_code == 503
    response = server.post(V1, json={"instances": [list(ROWS[0])]})
    assert response.status_code == 503


def test_champion_appears_then_moves_under_load(
    trained_registry: Any, candidates: dict[str, Any], tmp_path: Path
) -> None:
    uri = copy_registry(trained_registry.state_dir / "mlflow.db", tmp_path / "registry")
    client = mlflow_client(uri)
    tree_version = register_candidate(uri, "decision_tree")
    client.delete_registered_model_alias(MODEL, "champion")  # no champion yet

    server = start_server(tmp_path / "server", uri)
    try:
        server.wait_live()
        not_ready(server)
        wait_for(
            lambda: "champion" in (server.get("/health").json()["registry_error"] or ""),
            60,
            "the watcher to find no champion",
        )
        not_ready(server)

        client.set_registered_model_alias(MODEL, "champion", "1")
        server.wait_ready()
        assert server.get("/health").json()["model_version"] == "1"

        expected = {
            "1": candidates["lightgbm"].predict(pd.DataFrame([ROWS[0]], columns=FEATURES))[0],
            tree_version: candidates["decision_tree"].predict(
                pd.DataFrame([ROWS[0]], columns=FEATURES)
            )[0],
        }
        load = Load(server, threads=4)
        load.start()
        wait_for(lambda: load.count() >= 40, 60, "traffic on version 1")
        client.set_registered_model_alias(MODEL, "champion", tree_version)
        wait_for(lambda: load.seen(tree_version) >= 40, 120, f"traffic on version {tree_version}")
        load.stop()

        assert load.failures == [], load.failures[:5]
        for version, value in load.answers:
            # Each answer is exactly what the version it names predicts: never a mix.
            assert version in expected
            assert abs(value - expected[version]) <= 1e-4, (version, value)
        for versions in load.by_thread.values():  # the swap happens once, forward
            switch = versions.index(tree_version)
            assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {tree_version}

        metrics = server.get("/metrics").text
        assert f'model_version="{tree_version}"' in metrics
        info = [
            line for line in metrics.splitlines() if line.startswith("model_server_model_info{")
        ]
        assert len(info) == 1 and f'model_version="{tree_version}"' in info[0]
        assert (
            'model_server_model_loads_total{model_name="california-housing",outcome="success"} 2.0'
            in metrics
        )
        refused_before_ready = 2  # the two not_ready() checks' predictions
        # A last burst, then SIGTERM at once: its records are still queued in the server.
        burst = server.post(V1, json={"instances": [list(ROWS[1])] * 300})
        assert burst.status_code == 200
        served_instances = len(load.answers) + 300
    finally:
        code = server.stop()
    assert code == 0, server.log()[-3000:]
    # SIGTERM flushed every record: one row per served instance, one per refused request.
    assert len(server.rows("status = 200")) == served_instances
    assert len(server.rows("status = 503")) == refused_before_ready
    per_version = defaultdict(int)
    for row in server.rows("status = 200"):
        per_version[row["model_version"]] += 1
    assert per_version["1"] > 0 and per_version[tree_version] > 0


class Load(ClientThreads):
    """Threads sending one-row requests (v1 and v2 alternately) until stopped."""

    def __init__(self, server: ServerProcess, threads: int) -> None:
        super().__init__(threads, join_timeout=60)
        self.server = server
        self.answers: list[tuple[str, float]] = []
        self.failures: list[str] = []
        self.by_thread: dict[int, list[str]] = defaultdict(list)

    def count(self) -> int:
        return len(self.answers)

    def seen(self, version: str) -> int:
        with self._lock:
            return sum(1 for v, _ in self.answers if v == version)

    def _run(self, index: int) -> None:
        with self.server.client(timeout=30) as client:
            k = 0
            while not self._stop.is_set():
                k += 1
                try:
                    version, value = self._one(client, k % 2 == 0)
                except Exception as exc:  # every failure is a finding
                    with self._lock:
                        self.failures.append(repr(exc))
                    continue
                with self._lock:
                    self.answers.append((version, value))
                    self.by_thread[index].append(version)

    @staticmethod
    def _one(client: httpx.Client, v2: bool) -> tuple[str, float]:
        if v2:
            tensor = {"name": "x", "shape": [1, 8], "datatype": "FP64", "data": list(ROWS[0])}
            response = client.post(V2, json={"inputs": [tensor]})
            response.raise_for_status()
            body = response.json()
            [output] = [o for o in body["outputs"] if o["name"] == "predict"]
            value = output["data"][0]
        else:
            response = client.post(V1, json={"instances": [list(ROWS[0])]})
            response.raise_for_status()
            body = response.json()
            value = body["predictions"][0]
        assert body["model_version"] == response.headers["x-model-version"]
        return body["model_version"], float(value)


def poll_failures(server: ServerProcess) -> float:
    return server.metric("model_server_alias_poll_failures_total")


def test_mlflow_down_at_start_and_while_serving(
    trained_registry: Any, candidates: dict[str, Any], tmp_path: Path
) -> None:
    """MLflow unreachable at start: live, not ready, ready once a real MLflow server answers.
    MLflow gone while serving: the loaded version keeps serving, failed polls are counted, and
    once MLflow is back they stop and an alias moved meanwhile is followed.

    The server reaches MLflow through a TCP proxy: stopped, nothing listens on the server's
    MLflow port and open connections are cut (a down MLflow, as the server sees it), without
    paying MLflow's start-up again for each outage."""
    uri = copy_registry(trained_registry.state_dir / "mlflow.db", tmp_path / "registry")
    tree_version = register_candidate(uri, "decision_tree")  # @champion stays on version 1
    mlflow_port = free_port()
    proxy = TcpProxy(("127.0.0.1", mlflow_port))
    # MLflow's HTTP client retries for minutes by default: fail each poll fast instead.
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    server = start_server(tmp_path / "server", f"http://127.0.0.1:{proxy.port}", env_extra=quick)
    load = Load(server, threads=2)
    try:
        # Boots beside the server; the model server reads the registry's artifact paths itself.
        with mlflow_server(
            uri,
            tmp_path / "mlartifacts",
            tmp_path / "mlflow.log",
            port=mlflow_port,
            serve_artifacts=False,
        ):
            server.wait_live()
            wait_for(
                lambda: "unreachable" in (server.get("/health").json()["registry_error"] or ""),
                60,
                "a failed poll",
            )
            not_ready(server)
            assert poll_failures(server) >= 1
            metrics = server.get("/metrics").text
            assert 'model_server_model_ready{model_name="california-housing"} 0.0' in metrics

            proxy.start()  # MLflow comes up
            server.wait_ready()
            assert server.get("/health").json()["model_version"] == "1"
            load.start()
            wait_for(lambda: load.count() >= 50, 60, "answers")

            proxy.stop()  # MLflow goes away: the loaded version serves on, each poll fails
            down = poll_failures(server)
            wait_for(lambda: poll_failures(server) >= down + 3, 60, "failed polls")
            mlflow_client(uri).set_registered_model_alias(MODEL, "champion", tree_version)
            served_while_down = load.count()
            wait_for(lambda: load.count() >= served_while_down + 50, 60, "answers")
            assert load.seen(tree_version) == 0
            assert "unreachable" in server.get("/health").json()["registry_error"]

            proxy.start()  # MLflow is back: the moved alias is followed, polls succeed
            server.wait_version(tree_version)
            back = poll_failures(server)
            wait_for(lambda: load.seen(tree_version) >= 50, 60, "the new version's answers")
            polls = server.metric("model_server_alias_polls_total")
            wait_for(
                lambda: server.metric("model_server_alias_polls_total") >= polls + 3,
                30,
                "three more polls",
            )
            assert poll_failures(server) == back  # all of them answered
            assert server.get("/health").json()["registry_error"] is None
    finally:
        load.stop()
        proxy.stop()
        code = server.stop()
    assert code == 0, server.log()[-3000:]
    assert load.failures == [], load.failures[:5]
    assert {version for version, _ in load.answers} == {"1", tree_version}
    tree = candidates["decision_tree"].predict(pd.DataFrame([ROWS[0]], columns=FEATURES))[0]
    assert all(abs(v - tree) <= 1e-4 for version, v in load.answers if version != "1")
