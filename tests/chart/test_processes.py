"""The chart's containers, run here as processes with what the rendered manifests give them.

The MLflow server, the initial training Job, the retraining CronJob's container and the
predictor are started with their rendered command, args, env and ports (tests/chart/
containers.py lists the few substitutions a machine without a cluster needs), as the images'
uid 10001 with the image's files read-only, against this machine's PostgreSQL standing in for
the chart's StatefulSet. The rendered probes, the ServiceMonitor's port and path, a v1
prediction and the `helm test` script are then called. A chart that passes an env var the
code does not read, or probes a path the server does not serve, fails here.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import (
    NAMESPACE,
    REPO,
    VALUE_SETS,
    WORKLOAD_KINDS,
    find,
    pod_spec,
    render,
)
from tests.chart.containers import (
    RUNTIME,
    Cluster,
    Running,
    base_env,
    docker_launch,
    http,
    launch,
    probe_url,
    read_only,
    service_target,
    stage_training_image,
    unread_env,
    wait_http,
)
from tests.support.servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FULLNAME = "ch-california-housing"
ROW = [8.3252, 41.0, 6.984127, 1.02381, 322.0, 2.555556, 37.88, -122.23]


# --- Static: every env var the chart passes is one the code reads --------------------------


def predictor_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    isvc = find(docs, "InferenceService")
    spec = (
        isvc[0]["spec"]["predictor"]
        if isvc
        else pod_spec(find(docs, "Deployment", "-predictor")[0])
    )
    return spec["containers"][0]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_env_var_of_the_predictor_is_read_by_the_server(tools, value_set: str) -> None:
    docs = render("helm4", value_set)
    assert unread_env(predictor_container(docs), "model_server") == []


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_env_var_of_the_jobs_is_read_by_the_training_job(tools, value_set: str) -> None:
    docs = render("helm4", value_set)
    for kind in ("Job", "CronJob"):
        for obj in find(docs, kind):
            assert unread_env(pod_spec(obj)["containers"][0], "training_job") == [], kind


# --- Dynamic: the containers as processes ------------------------------------------------


def psql(sql: str) -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
    )


@dataclass
class System:
    docs: list[dict[str, Any]]
    cluster: Cluster
    root: Path
    image: Path
    mlflow_port: int
    http_port: int
    processes: list[Running]

    def volumes(self, name: str, container: dict[str, Any]) -> dict[str, Path]:
        """A fresh writable folder for each of the container's volume mounts."""
        mapped = {}
        for mount in container.get("volumeMounts", []):
            path = self.root / name / mount["name"]
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)
            mapped[mount["mountPath"]] = path
        return mapped

    def image_env(self, volumes: dict[str, Path]) -> dict[str, str]:
        """What the Dockerfiles set: HOME and caches in /tmp (an emptyDir in the chart)."""
        tmp = volumes["/tmp"]
        return {
            "HOME": str(tmp),
            "XDG_CACHE_HOME": str(tmp / ".cache"),
            "MPLCONFIGDIR": str(tmp / "matplotlib"),
            "TMPDIR": str(tmp),
        }

    def start(
        self, name: str, container: dict[str, Any], host_env: dict[str, str] | None = None
    ) -> Running:
        volumes = self.volumes(name, container)
        if RUNTIME == "docker":
            pod = next(
                pod_spec(d)
                for d in self.docs
                if d["kind"] in WORKLOAD_KINDS
                and container["name"] in [c["name"] for c in pod_spec(d)["containers"]]
            )
            running = docker_launch(
                self.cluster, pod, container, volumes, self.root / f"{name}.log", extra_env=host_env
            )
            self.processes.append(running)
            return running
        running = launch(
            self.cluster,
            container,
            volumes,
            self.image,
            self.root / f"{name}.log",
            extra_env={**self.image_env(volumes), **(host_env or {})},
            wrapper=read_only(self.image, REPO),
        )
        self.processes.append(running)
        return running

    def run_to_completion(self, name: str, container: dict[str, Any], timeout: float) -> Running:
        running = self.start(name, container)
        try:
            running.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            running.stop()
            raise AssertionError(
                f"{name} did not finish in {timeout}s:\n{running.output()}"
            ) from None
        assert running.process.returncode == 0, (
            f"{name} exited {running.process.returncode}:\n{running.output()}"
        )
        return running


@pytest.fixture(scope="module")
def system(tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    suffix = uuid.uuid4().hex[:8]
    user, mlflow_db, serving_db = f"ch_{suffix}", f"ch_mlflow_{suffix}", f"ch_serving_{suffix}"
    mlflow_port, http_port, grpc_port = free_port(), free_port(), free_port()
    docs = render(
        "helm4",
        None,
        (
            f"postgresql.auth.username={user}",
            f"postgresql.mlflowDatabase={mlflow_db}",
            f"postgresql.servingDatabase={serving_db}",
            f"mlflow.port={mlflow_port}",
            f"predictor.httpPort={http_port}",
            f"predictor.grpcPort={grpc_port}",
            "mlflow.workers=1",
        ),
    )
    cluster = Cluster(docs, NAMESPACE)
    password = cluster.secrets[(f"{FULLNAME}-postgresql", "password")]
    # What the bundled StatefulSet creates on first start: POSTGRES_USER owning POSTGRES_DB,
    # and the serving database from the initdb ConfigMap.
    psql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    psql(f"CREATE DATABASE {mlflow_db} OWNER {user}")
    psql(f"CREATE DATABASE {serving_db} OWNER {user}")
    root = tmp_path_factory.mktemp("chart-processes")
    root.chmod(0o755)
    image = stage_training_image(root / "image")
    sysobj = System(docs, cluster, root, image, mlflow_port, http_port, [])
    try:
        yield sysobj
    finally:
        for running in sysobj.processes:
            running.stop()
        for db in (mlflow_db, serving_db):
            psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        psql(f"DROP ROLE IF EXISTS {user}")


@pytest.fixture(scope="module")
def mlflow(system: System) -> Running:
    container = pod_spec(find(system.docs, "Deployment", "-mlflow")[0])["containers"][0]
    # --host=0.0.0.0 is for the pod network; here the server listens on the loopback only.
    args = [a.replace("--host=0.0.0.0", "--host=127.0.0.1") for a in container["args"]]
    running = system.start("mlflow", {**container, "args": args})
    wait_http(probe_url(container, "startupProbe"), running, timeout=120)
    return running


def test_mlflow_answers_its_probes_and_service_name(system: System, mlflow: Running) -> None:
    container = pod_spec(find(system.docs, "Deployment", "-mlflow")[0])["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert http("GET", probe_url(container, probe))[0] == 200, probe
    api = f"http://127.0.0.1:{system.mlflow_port}/api/2.0/mlflow/experiments/search?max_results=1"
    # Clients reach it by its Service name: the Host header must be accepted...
    for host in (
        f"{FULLNAME}-mlflow:{system.mlflow_port}",
        f"{FULLNAME}-mlflow.{NAMESPACE}.svc.cluster.local:{system.mlflow_port}",
    ):
        # The first call creates MLflow's default experiment: slow on a loaded machine.
        status, text = http("GET", api, headers={"Host": host}, timeout=120)
        assert status == 200, (host, status, text[:300])
    # ...and any other refused (MLflow's DNS-rebinding protection is on, with our list).
    assert http("GET", api, headers={"Host": "evil.example:80"})[0] == 403


@pytest.fixture(scope="module")
def trained(system: System, mlflow: Running) -> Running:
    container = pod_spec(find(system.docs, "Job")[0])["containers"][0]
    return system.run_to_completion("training-job", container, timeout=900)


def test_initial_training_job_registers_a_champion(system: System, trained: Running) -> None:
    status, text = http(
        "GET",
        f"http://127.0.0.1:{system.mlflow_port}/api/2.0/mlflow/registered-models/alias"
        "?name=california-housing&alias=champion",
    )
    assert status == 200, text


def test_retraining_cronjob_container_decides(system: System, trained: Running) -> None:
    container = containers_of_cronjob(system)
    running = system.run_to_completion("retrain", container, timeout=900)
    assert running.output()


def containers_of_cronjob(system: System) -> dict[str, Any]:
    return pod_spec(find(system.docs, "CronJob")[0])["containers"][0]


def champion_exists(system: System) -> bool:
    status, _ = http(
        "GET",
        f"http://127.0.0.1:{system.mlflow_port}/api/2.0/mlflow/registered-models/alias"
        "?name=california-housing&alias=champion",
    )
    return status == 200


@pytest.fixture(scope="module")
def champion(system: System, mlflow: Running) -> None:
    """A @champion in the chart's MLflow for the predictor: the one the initial training Job
    registered (the tests above), or, while that Job fails, one registered by the repository's
    own pipeline run against the same server, so that the predictor's part is still tested."""
    if champion_exists(system):
        return
    seed = system.root / "seed"
    (seed / "data").mkdir(parents=True)
    shutil.copytree(REPO / "data" / "raw", seed / "data" / "raw")
    shutil.copy2(REPO / "params.yaml", seed / "params.yaml")
    env = {
        **base_env(),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{system.mlflow_port}",
        "TRAINING_STATE_DIR": str(seed / "state"),
        "HOME": str(seed),
    }
    result = subprocess.run(
        [sys.executable, "-m", "training_job", "pipeline"],
        cwd=seed,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert champion_exists(system)


@pytest.fixture(scope="module")
def predictor(system: System, champion: None) -> Running:
    container = predictor_container(system.docs)
    # The server binds 0.0.0.0 in its pod; here the loopback only.
    running = system.start("predictor", container, host_env={"MODEL_SERVER_HOST": "127.0.0.1"})
    wait_http(probe_url(container, "startupProbe"), running, timeout=180)
    wait_http(probe_url(container, "readinessProbe"), running, timeout=180)
    return running


def test_predictor_answers_its_rendered_probes(system: System, predictor: Running) -> None:
    container = predictor_container(system.docs)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        status, text = http("GET", probe_url(container, probe))
        assert status == 200, (probe, status, text[:300])


def test_service_monitor_port_and_path_serve_metrics(system: System, predictor: Running) -> None:
    sm = find(system.docs, "ServiceMonitor")[0]
    endpoint = sm["spec"]["endpoints"][0]
    service = next(
        s
        for s in find(system.docs, "Service")
        if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    )
    port = service_target(
        system.docs, service["metadata"]["name"], endpoint["port"], predictor_container(system.docs)
    )
    status, text = http("GET", f"http://127.0.0.1:{port}{endpoint['path']}")
    assert status == 200
    for metric in (
        "model_server_requests_total",
        "model_server_request_latency_seconds",
        "model_server_model_ready",
    ):
        assert metric in text, metric


def test_v1_prediction(system: System, predictor: Running) -> None:
    status, text = http(
        "POST",
        f"http://127.0.0.1:{system.http_port}/v1/models/california-housing:predict",
        {"instances": [ROW, ROW]},
    )
    assert status == 200, text
    predictions = json.loads(text)["predictions"]
    assert len(predictions) == 2 and all(math.isfinite(float(p)) for p in predictions)


def test_helm_test_script_passes(system: System, predictor: Running) -> None:
    pod = next(d for d in system.docs if d["kind"] == "Pod")
    script = pod["spec"]["containers"][0]["args"][0]
    # KServe's Service NAME-predictor maps port 80 to the predictor container's port.
    script = re.sub(
        rf"http://{FULLNAME}-predictor\.{NAMESPACE}\.svc(?=/)",
        f"http://127.0.0.1:{system.http_port}",
        script,
    )
    assert "127.0.0.1" in script
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=200
    )
    assert result.returncode == 0, result.stderr[-3000:]
