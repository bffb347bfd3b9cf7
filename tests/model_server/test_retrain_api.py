"""The retraining API on a real server: status, trigger (both launchers), config, logs, and the
retraining gauges read from the serving database.

The local launcher starts `python -m training_job retrain --source api` in its working
directory: there, a stand-in `training_job` package (first on sys.path for `-m`) records how it
was started, holds the lease like the real job, and records a decision, so the trigger, the
409 and the status are exercised against a real process and a real lease, in seconds.
The Kubernetes launcher talks to a double of the API server on loopback (kube_double.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from housing.policy import RetrainPolicy
from housing.servingdb import RecordStore
from housing.servingdb.retrain import RetrainStore
from model_server.launchers import (
    FIELD_MANAGER,
    KubernetesLauncher,
    LaunchError,
    job_from_cronjob,
    manual_job_name,
)
from tests.support.kube_double import TOKEN, KubeDouble
from tests.support.server import REPO, ServerProcess, free_port, sample, start_server, wait_for

# A CronJob as the API server returns it: the chart's, with what the server adds.
CRONJOB = json.loads((Path(__file__).parent / "testdata" / "retrain_cronjob.json").read_text())
CRONJOB_NAME = CRONJOB["metadata"]["name"]
NAMESPACE = CRONJOB["metadata"]["namespace"]
SIGNALS = {"signals_interval_seconds": "0.3"}

STUB = '''
"""Stand-in for the training job: records its start, holds the lease, records a decision."""
import json, os, sys, time
from pathlib import Path

from model_server.launchers import (
    KubernetesLauncher,
    LaunchError,
    job_from_cronjob,
    manual_job_name,
)
from housing.servingdb import RecordStore
from housing.servingdb.retrain import RetrainStore

here = Path.cwd()
(here / f"launched-{os.getpid()}.json").write_text(json.dumps({
    "argv": sys.argv[1:], "cwd": os.getcwd(), "sid": os.getsid(0),
    "database": os.environ.get("TRAINING_SERVING_DATABASE_URL"),
    "marker": os.environ.get("RETRAIN_TEST_MARKER"),
}))
records = RecordStore(os.environ["TRAINING_SERVING_DATABASE_URL"])
store = RetrainStore(records)
holder = f"stub:{os.getpid()}"
assert store.acquire(holder, 60) is not None
decision = store.record_decision(
    source=sys.argv[sys.argv.index("--source") + 1], forced="--force" in sys.argv, go=True,
    triggers=["forced"], reasons=["stand-in run"], signals={}, policy={}, outcome="running",
)
store.renew(holder, 60, decision)
print("stand-in retrain running", flush=True)
deadline = time.monotonic() + 60
while not (here / "release").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
store.finish_decision(decision, "promoted", "7")
store.release(holder)
print("stand-in retrain done", flush=True)
'''


def nowhere(tmp: Path) -> str:
    """An MLflow store that does not exist: the server waits for it (no model is needed)."""
    return f"sqlite:///{tmp / 'no-mlflow' / 'mlflow.db'}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("retrain-work")
    (work / "training_job").mkdir()
    (work / "training_job" / "__init__.py").write_text("")
    (work / "training_job" / "__main__.py").write_text(textwrap.dedent(STUB))
    return work


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, workdir: Path) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("retrain-local")
    server = start_server(
        root / "server",
        nowhere(root),
        env_extra={"RETRAIN_TEST_MARKER": "from-the-server-env"},
        retrain_workdir=str(workdir),
        **SIGNALS,
    )
    try:
        server.wait_live()
        yield server
    finally:
        server.stop()
        (workdir / "release").touch()  # a stand-in still waiting ends now


def retrain_store(server: ServerProcess) -> tuple[RecordStore, RetrainStore]:
    records = RecordStore(f"sqlite:///{server.database}")
    return records, RetrainStore(records)


def metric(server: ServerProcess, name: str, **labels: str) -> float | None:
    return sample(server.get("/metrics").text, name, **labels)


def test_the_routes_are_in_the_openapi_document(local: ServerProcess) -> None:
    paths = local.get("/openapi.json").json()["paths"]
    for path in ("/retrain/status", "/retrain/trigger", "/retrain/config", "/retrain/logs/{limit}"):
        assert path in paths, path
    assert "202" in paths["/retrain/trigger"]["post"]["responses"]


def test_status_before_anything_ran(local: ServerProcess) -> None:
    status = local.get("/retrain/status").json()
    assert status == {
        "enabled": True,
        "launcher": "local",
        "thresholds": RetrainPolicy().model_dump(),
        "running": False,
        "lease": None,
        "last_decision": None,
    }


def test_trigger_launches_the_job_and_a_second_trigger_is_409(
    local: ServerProcess, workdir: Path
) -> None:
    response = local.post("/retrain/trigger", json={"force": True})
    assert response.status_code == 202, response.text
    launched = response.json()["launched"]
    assert response.json()["force"] is True
    assert launched["launcher"] == "local" and launched["cwd"] == str(workdir)
    assert launched["command"][1:] == [
        "-m", "training_job", "retrain", "--source", "api", "--force",
    ]  # fmt: skip
    log_file = Path(launched["log_file"])
    assert log_file.parent == workdir / "state" / "retrain-logs"

    # The run took the lease: the status says so, and a second trigger is refused.
    wait_for(lambda: local.get("/retrain/status").json()["running"], 60, "the run's lease")
    status = local.get("/retrain/status").json()
    assert status["lease"]["holder"] == f"stub:{launched['pid']}"
    assert status["last_decision"]["outcome"] == "running"
    refused = local.post("/retrain/trigger", json={})
    assert refused.status_code == 409, refused.text
    assert f"stub:{launched['pid']}" in refused.json()["error"]
    wait_for(lambda: metric(local, "model_server_retrain_running") == 1.0, 10, "the running gauge")

    (workdir / "release").touch()
    wait_for(lambda: not local.get("/retrain/status").json()["running"], 60, "the run to end")
    status = local.get("/retrain/status").json()
    assert status["last_decision"]["outcome"] == "promoted"
    assert status["last_decision"]["source"] == "api" and status["last_decision"]["forced"]

    # How it was started: arguments, folder, the server's environment, its own session,
    # and the serving database the server reads (made absolute).
    started = json.loads((workdir / f"launched-{launched['pid']}.json").read_text())
    assert started["argv"] == ["retrain", "--source", "api", "--force"]
    assert started["cwd"] == str(workdir)
    assert started["marker"] == "from-the-server-env"
    assert started["sid"] == launched["pid"] != os.getsid(local.process.pid)
    assert started["database"] == f"sqlite:///{local.database}"
    wait_for(lambda: "stand-in retrain done" in log_file.read_text(), 30, "the run's output")

    # Without a body: not forced. (The first process may take a moment to exit: until then
    # this server refuses to start another.)
    answers: list[httpx.Response] = []

    def trigger_again() -> bool:
        answers.append(local.post("/retrain/trigger"))
        return answers[-1].status_code != 409

    wait_for(trigger_again, 30, "the first run's process to exit")
    assert answers[-1].status_code == 202, answers[-1].text
    second = answers[-1].json()["launched"]
    wait_for(
        lambda: "stand-in retrain done" in Path(second["log_file"]).read_text(),
        60,
        "the second run to end",
    )
    started = json.loads((workdir / f"launched-{second['pid']}.json").read_text())
    assert started["argv"] == ["retrain", "--source", "api"]


def test_retrain_gauges(local: ServerProcess) -> None:
    records, store = retrain_store(local)
    try:
        wait_for(lambda: not store.lease(), 60, "no run going")
        store.record_decision(
            source="cron", forced=False, go=False, triggers=[], reasons=["no trigger fired"],
            signals={}, policy={}, outcome="skipped",
        )  # fmt: skip
        decisions = store.decisions(1000)
    finally:
        records.close()
    promoted = [d for d in decisions if d["outcome"] == "promoted"]
    assert promoted  # by the trigger test's runs

    def gauges_caught_up() -> bool:
        return metric(local, "model_server_retrain_decisions", outcome="skipped") == 1.0

    wait_for(gauges_caught_up, 10, "the decision gauges")
    assert metric(local, "model_server_retrain_running") == 0.0
    assert metric(local, "model_server_retrain_decisions", outcome="promoted") == len(promoted)
    assert metric(local, "model_server_retrain_decisions", outcome="failed") == 0.0
    assert metric(local, "model_server_retrain_last_go_unpromoted") == 0.0
    newest = max(promoted, key=lambda d: d["id"])
    last_success = metric(local, "model_server_retrain_last_success_timestamp_seconds")
    assert last_success == pytest.approx(_timestamp(newest["finished_at"]), abs=1e-3), newest
    last_decision = metric(local, "model_server_retrain_last_decision_timestamp_seconds")
    assert last_decision is not None and last_decision >= last_success

    # A run that went and was not promoted raises the flag.
    records, store = retrain_store(local)
    try:
        decision = store.record_decision(
            source="cron", forced=False, go=True, triggers=["drift"], reasons=["drift"],
            signals={}, policy={}, outcome="running",
        )  # fmt: skip
        store.finish_decision(decision, "not_promoted", "8")
    finally:
        records.close()
    wait_for(
        lambda: metric(local, "model_server_retrain_last_go_unpromoted") == 1.0,
        10,
        "the unpromoted flag",
    )


def _timestamp(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_config_merges_validates_and_is_what_the_job_reads(local: ServerProcess) -> None:
    first = local.post("/retrain/config", json={"r2_floor": 0.6})
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == {"r2_floor": 0.6}
    second = local.post("/retrain/config", json={"drift_threshold": 0.3, "enabled": False})
    assert second.json()["stored"] == {"r2_floor": 0.6, "drift_threshold": 0.3, "enabled": False}
    expected = RetrainPolicy(r2_floor=0.6, drift_threshold=0.3, enabled=False).model_dump()
    assert second.json()["thresholds"] == expected
    status = local.get("/retrain/status").json()
    assert status["thresholds"] == expected and status["enabled"] is False

    # The training job validates what it reads with the same model.
    records, store = retrain_store(local)
    try:
        assert RetrainPolicy.model_validate(store.policy()).model_dump() == expected
    finally:
        records.close()

    # null puts a field back to its default.
    reset = local.post("/retrain/config", json={"r2_floor": None, "enabled": None})
    assert reset.json()["stored"] == {"drift_threshold": 0.3}
    assert reset.json()["thresholds"]["r2_floor"] == RetrainPolicy().r2_floor


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"r2_floor": 3}, "r2_floor"),
        ({"min_feedback": 0}, "min_feedback"),
        ({"enabled": "maybe"}, "enabled"),
        ({"drift_threshold": "high"}, "drift_threshold"),
        ({"unknown": 1}, "unknown"),
        ([1, 2], "body"),
    ],
)
def test_bad_config_is_422_naming_the_field_and_changes_nothing(
    local: ServerProcess, body: Any, named: str
) -> None:
    before = local.get("/retrain/status").json()["thresholds"]
    response = local.post("/retrain/config", json=body)
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]
    assert local.get("/retrain/status").json()["thresholds"] == before


def test_malformed_config_is_400(local: ServerProcess) -> None:
    response = local.post(
        "/retrain/config", content=b'{"r2_floor": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("body", [{"force": "yes"}, {"force": 1}, {"other": True}])
def test_bad_trigger_body_is_422(local: ServerProcess, body: dict[str, Any]) -> None:
    assert local.post("/retrain/trigger", json=body).status_code == 422


def test_logs_are_the_newest_decisions_first(local: ServerProcess) -> None:
    logs = local.get("/retrain/logs/3").json()
    assert len(logs) == 3
    ids = [d["id"] for d in logs]
    assert ids == sorted(ids, reverse=True)
    assert set(logs[0]) >= {"decided_at", "source", "go", "triggers", "reasons", "outcome"}


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1001"])
def test_logs_limit_is_checked(local: ServerProcess, limit: str) -> None:
    assert local.get(f"/retrain/logs/{limit}").status_code == 422


# -- the Kubernetes launcher, against a double of the API server ---------------------------


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, KubeDouble]]:
    root = tmp_path_factory.mktemp("retrain-kube")
    double = KubeDouble(NAMESPACE, CRONJOB).start()
    env = {"KUBECONFIG": str(double.kubeconfig(root / "kubeconfig"))}
    server = start_server(
        root / "server",
        nowhere(root),
        env_extra=env,
        retrain_launcher="kubernetes",
        retrain_cronjob=CRONJOB_NAME,
        **SIGNALS,
    )
    try:
        server.wait_live()
        yield server, double
    finally:
        server.stop()
        double.stop()


def test_kubernetes_trigger_creates_a_job_from_the_cronjob_as_kubectl_does(
    kube: tuple[ServerProcess, KubeDouble], tmp_path: Path
) -> None:
    server, double = kube
    assert "KUBERNETES_SERVICE_HOST" not in os.environ  # the kubeconfig is what configures it
    double.requests.clear()
    response = server.post("/retrain/trigger", json={"force": True})
    assert response.status_code == 202, response.text
    launched = response.json()["launched"]

    assert [(r.method, r.path) for r in double.requests] == [
        ("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/{CRONJOB_NAME}"),
        ("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs?fieldManager={FIELD_MANAGER}"),
    ]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in double.requests)
    job = double.requests[1].body
    assert launched == {
        "launcher": "kubernetes",
        "namespace": NAMESPACE,
        "cronjob": CRONJOB_NAME,
        "job": job["metadata"]["name"],
        "uid": launched["uid"],
        "args": ["retrain", "--source", "api", "--force"],
    }

    # kubectl create job --from=cronjob/NAME (pkg/cmd/create/create_job.go):
    template = CRONJOB["spec"]["jobTemplate"]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["name"].startswith(f"{CRONJOB_NAME}-manual-")
    assert len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["namespace"] == NAMESPACE
    assert job["metadata"]["labels"] == template["metadata"]["labels"]
    assert job["metadata"]["annotations"] == {
        "cronjob.kubernetes.io/instantiate": "manual",
        **template["metadata"]["annotations"],
    }  # and not the CronJob's own annotations
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": CRONJOB_NAME,
            "uid": CRONJOB["metadata"]["uid"],
            "controller": True,
        }
    ]
    assert set(job["metadata"]) == {"name", "namespace", "labels", "annotations", "ownerReferences"}
    # The template's spec, but for the arguments of the training container.
    expected_spec = json.loads(json.dumps(template["spec"]))
    [container] = expected_spec["template"]["spec"]["containers"]
    container["args"] = ["retrain", "--source", "api", "--force"]
    assert job["spec"] == expected_spec

    assert_valid_job(job, tmp_path)


def assert_valid_job(job: dict[str, Any], tmp_path: Path) -> None:
    """A batch/v1 Job with no unknown field: the client's V1Job model reads it and writes it
    back unchanged; and kubernetes-validate --strict accepts it where the tools are set up."""
    from kubernetes.client import ApiClient

    client = ApiClient()
    typed = client.deserialize(json.dumps(job), "V1Job", "application/json")
    assert client.sanitize_for_serialization(typed) == job

    validate = REPO / ".tools" / "bin" / "kubernetes-validate"
    if validate.exists() or shutil.which("kubernetes-validate"):
        manifest = tmp_path / "job.json"
        manifest.write_text(json.dumps(job))
        command = str(validate) if validate.exists() else "kubernetes-validate"
        result = subprocess.run(
            [command, "--strict", "-k", "1.33.0", str(manifest)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_trigger_is_409_while_a_run_holds_the_lease(
    kube: tuple[ServerProcess, KubeDouble],
) -> None:
    server, double = kube
    records, store = retrain_store(server)
    try:
        assert store.acquire("retrain-pod-1", 60) is not None
        double.requests.clear()
        response = server.post("/retrain/trigger", json={"force": True})
        assert response.status_code == 409, response.text
        assert "retrain-pod-1" in response.json()["error"]
        assert double.requests == []  # nothing was created
        assert server.get("/retrain/status").json()["lease"]["holder"] == "retrain-pod-1"
    finally:
        store.release("retrain-pod-1")
        records.close()


def test_kubernetes_trigger_without_the_cronjob_is_502(
    kube: tuple[ServerProcess, KubeDouble],
) -> None:
    server, double = kube
    double.cronjob, saved = None, double.cronjob
    try:
        response = server.post("/retrain/trigger")
    finally:
        double.cronjob = saved
    assert response.status_code == 502, response.text
    assert "404" in response.json()["error"] and CRONJOB_NAME in response.json()["error"]
    assert [r.method for r in double.requests[-1:]] == ["GET"]


def test_unreachable_kubernetes_api_is_a_502_launch_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    double = KubeDouble(NAMESPACE, CRONJOB)  # never started; its kubeconfig names a dead port
    kubeconfig = double.kubeconfig(tmp_path / "kubeconfig")
    double._server.server_close()
    text = kubeconfig.read_text().replace(double.url, f"http://127.0.0.1:{free_port()}")
    kubeconfig.write_text(text)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(LaunchError, match="unreachable") as caught:
        KubernetesLauncher(CRONJOB_NAME).launch(force=False)
    assert caught.value.status_code == 502


def test_missing_kubeconfig_is_a_502_launch_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(LaunchError, match="no Kubernetes configuration"):
        KubernetesLauncher(CRONJOB_NAME).launch(force=False)


def test_a_scheduled_source_is_replaced_and_long_names_fit() -> None:
    cronjob = json.loads(json.dumps(CRONJOB))
    [container] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    container["args"] = ["retrain", "--source", "cron"]
    job = job_from_cronjob(cronjob, "x", "ns", force=False)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["retrain", "--source", "api"]
    name = manual_job_name("r" * 80)
    assert len(name) == 63 and name.startswith("r" * 49 + "-manual-")
