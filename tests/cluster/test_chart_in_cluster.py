"""The chart in a real Kubernetes cluster (cluster/): installed, exercised, upgraded under
load, rolled back and removed, with every object accepted or refused by the real API server
and every Pod run by a real kubelet.

The tests run in file order and build on each other (one cluster, one release), like an
operator's first day: bare cluster, CRDs, install, use, RBAC, upgrade, rollback, uninstall.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from cluster import config, node
from model_server.launchers import FIELD_MANAGER
from tests.chart.conftest import CHART, HELMS, VALUE_SETS
from tests.cluster.conftest import CRDS, LOCAL_VALUES, chart_version, helm, kubectl

# The first test also starts the cluster: on a new machine that compiles Kubernetes, etcd and
# CoreDNS and builds three images (about 20 min on 2 cores), past the suite's 600 s default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

NAMESPACE = "housing"
RELEASE = "ch"
PREFIX = f"{RELEASE}-california-housing"
USER_KEY = "user-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
INSTANCE = [8.3252, 41.0, 6.98412698, 1.02380952, 322.0, 2.55555556, 37.88, -122.23]


def wait_until(what: str, check, timeout: float, every: float = 2.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except AssertionError as error:
            last = error
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")


def service_url(name: str, namespace: str = NAMESPACE) -> str:
    """http://CLUSTER-IP:PORT of a Service: from this host through kube-proxy's rules."""
    svc = json.loads(kubectl("-n", namespace, "get", "service", name, "-o", "json").stdout)
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


def http(method: str, url: str, body=None, key: str | None = None, timeout: float = 10):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def pod_logs(namespace: str, selector: str) -> str:
    return kubectl(
        "-n", namespace, "logs", "-l", selector, "--tail=50", "--all-containers", check=False
    ).stdout


# -- the cluster itself ---------------------------------------------------------------------


def test_the_node_runs_pods_with_services_and_dns(cluster: Path) -> None:
    node_doc = json.loads(kubectl("get", "node", config.NODE_NAME, "-o", "json").stdout)
    assert node_doc["status"]["nodeInfo"]["kubeletVersion"] == config.kubernetes_version()
    assert node_doc["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    # A Pod of the project's image resolves a Service by name through CoreDNS, reaches the API
    # server through its ClusterIP (kube-proxy), and resolves nothing outside the cluster.
    script = (
        "import socket\n"
        "ip = socket.gethostbyname('kubernetes.default.svc.cluster.local')\n"
        "socket.create_connection((ip, 443), timeout=5).close()\n"
        "try:\n"
        "    socket.gethostbyname('pypi.org'); outside = 'resolved'\n"
        "except OSError:\n"
        "    outside = 'unresolved'\n"
        "print(ip, outside)\n"
    )
    kubectl("delete", "pod", "dns-probe", "--ignore-not-found", "--wait=true")
    kubectl(
        "run",
        "dns-probe",
        "--restart=Never",
        f"--image=california-housing/model-server:{chart_version()}",
        "--image-pull-policy=Never",
        "--command",
        "--",
        "python",
        "-c",
        script,
    )
    wait_until(
        "the probe Pod to finish",
        lambda: (
            kubectl("get", "pod", "dns-probe", "-o", "jsonpath={.status.phase}").stdout
            in {"Succeeded", "Failed"}
        ),
        180,
    )
    assert kubectl("logs", "dns-probe").stdout.split() == [
        config.KUBERNETES_SERVICE_IP,
        "unresolved",
    ]
    kubectl("delete", "pod", "dns-probe", "--wait=false")


# -- a bare cluster, then the operators' CRDs -----------------------------------------------


@pytest.mark.parametrize("helm_binary", HELMS)
def test_a_bare_cluster_refuses_the_defaults_naming_the_missing_crds(
    cluster: Path, helm_binary: str
) -> None:
    # Bare: none of the operators' CRDs (a cluster kept from an earlier run may have them).
    for folder in sorted(p for p in CRDS.iterdir() if p.is_dir()):
        kubectl("delete", "--ignore-not-found", "--wait=true", "-f", str(folder))
    result = helm(
        helm_binary,
        "install",
        f"bare-{helm_binary}",
        str(CHART),
        "--namespace",
        "bare",
        "--create-namespace",
        check=False,
    )
    assert result.returncode != 0
    message = result.stderr
    assert "The cluster lacks the CRDs these values need" in message, message
    for needed in (
        "serving.kserve.io/v1beta1 InferenceService",
        "monitoring.coreos.com/v1 ServiceMonitor",
        "monitoring.coreos.com/v1 PrometheusRule",
        "kserve.enabled=false",
    ):
        assert needed in message, message
    assert "no matches for kind" not in message
    assert (
        helm(helm_binary, "status", f"bare-{helm_binary}", "-n", "bare", check=False).returncode
        != 0
    )


def test_with_the_crds_every_value_set_is_accepted_by_the_api_server(cluster: Path) -> None:
    for folder in sorted(p for p in CRDS.iterdir() if p.is_dir()):
        kubectl("apply", "--server-side", "-f", str(folder))
    for crd in (
        "inferenceservices.serving.kserve.io",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ):
        # (`kubectl wait` fails outright while a new CRD has no conditions yet.)
        wait_until(
            f"{crd} to be established",
            lambda crd=crd: (
                kubectl(
                    "get",
                    "crd",
                    crd,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                ).stdout
                == "True"
            ),
            60,
            every=0.5,
        )
    for value_set in VALUE_SETS:
        namespace = "ci-" + value_set.removesuffix("-values.yaml")
        kubectl(
            "apply",
            "-f",
            "-",
            input=kubectl(
                "create", "namespace", namespace, "--dry-run=client", "-o", "yaml"
            ).stdout,
        )
        for helm_binary in HELMS:
            # --validate: rendered with the cluster's own capabilities, as an install is.
            manifest = helm(
                helm_binary,
                "template",
                RELEASE,
                str(CHART),
                "--validate",
                "--namespace",
                namespace,
                "-f",
                str(CHART / "ci" / value_set),
            ).stdout
            applied = kubectl(
                "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest
            )
            assert "inferenceservice" in applied.stdout or "kserve-off" in value_set, applied.stdout
        kubectl("delete", "namespace", namespace, "--wait=false")


# -- the whole system in the cluster --------------------------------------------------------


def test_install_trains_registers_and_serves_the_champion(cluster: Path) -> None:
    kubectl(
        "apply",
        "-f",
        "-",
        input=kubectl("create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml").stdout,
    )
    kubectl(
        "apply",
        "-f",
        "-",
        input=kubectl(
            "-n",
            NAMESPACE,
            "create",
            "secret",
            "generic",
            "predictor-api-keys",
            f"--from-literal=user-api-keys={USER_KEY}",
            f"--from-literal=admin-api-keys={ADMIN_KEY}",
            "--dry-run=client",
            "-o",
            "yaml",
        ).stdout,
    )
    started = time.monotonic()
    helm(
        "helm4",
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "-f",
        str(LOCAL_VALUES),
        "--wait",
        "--wait-for-jobs",
        "--timeout",
        "15m",
        timeout=960,
    )
    print(f"helm install --wait --wait-for-jobs: {time.monotonic() - started:.0f} s")
    jobs = json.loads(kubectl("-n", NAMESPACE, "get", "jobs", "-o", "json").stdout)["items"]
    [training] = [j for j in jobs if j["metadata"]["name"].startswith(f"{PREFIX}-training")]
    assert training["status"].get("succeeded") == 1, training["status"]

    # The champion, as the in-cluster MLflow (on the in-cluster PostgreSQL) has it.
    mlflow = service_url(f"{PREFIX}-mlflow")
    status, alias = http(
        "GET",
        f"{mlflow}/api/2.0/mlflow/registered-models/alias?name=california-housing&alias=champion",
    )
    assert status == 200, alias
    version = alias["model_version"]["version"]

    predictor = service_url(f"{PREFIX}-predictor")
    status, body = http(
        "POST",
        f"{predictor}/v1/models/california-housing:predict",
        {"instances": [INSTANCE]},
        key=USER_KEY,
    )
    assert status == 200, body
    assert body["model_version"] == version
    [served] = body["predictions"]
    # The same rows through the registered model itself, loaded from the in-cluster MLflow.
    import mlflow as mlflow_client
    import pandas as pd

    from housing.contract import FEATURES

    mlflow_client.set_tracking_uri(mlflow)
    model = mlflow_client.pyfunc.load_model(f"models:/california-housing/{version}")
    [expected] = model.predict(pd.DataFrame([INSTANCE], columns=list(FEATURES)))
    assert served == pytest.approx(float(expected), abs=1e-4)
    status, _ = http(
        "POST", f"{predictor}/v1/models/california-housing:predict", {"instances": [INSTANCE]}
    )
    assert status == 401

    helm("helm4", "test", RELEASE, "--namespace", NAMESPACE, "--timeout", "5m")


def test_a_retraining_decision_runs_from_the_cronjob(cluster: Path) -> None:
    kubectl(
        "-n", NAMESPACE, "create", "job", "--from", f"cronjob/{PREFIX}-retrain", "manual-retrain"
    )
    kubectl(
        "-n",
        NAMESPACE,
        "wait",
        "--for=condition=Complete",
        "job/manual-retrain",
        "--timeout=600s",
        timeout=620,
    )
    logs = kubectl("-n", NAMESPACE, "logs", "job/manual-retrain").stdout
    assert "decision" in logs.lower(), logs[-2000:]


def test_the_trigger_route_creates_a_job_with_the_pods_own_token(cluster: Path) -> None:
    predictor = service_url(f"{PREFIX}-predictor")
    before = set(kubectl("-n", NAMESPACE, "get", "jobs", "-o", "name").stdout.split())
    status, body = http("POST", f"{predictor}/retrain/trigger", {"force": False}, key=USER_KEY)
    assert status == 403, body
    status, body = http("POST", f"{predictor}/retrain/trigger", {"force": False}, key=ADMIN_KEY)
    assert status == 202, body
    created = wait_until(
        "the triggered Job",
        lambda: set(kubectl("-n", NAMESPACE, "get", "jobs", "-o", "name").stdout.split()) - before,
        60,
    )
    [job] = created
    # (kubectl hides managedFields unless asked.)
    doc = json.loads(
        kubectl("-n", NAMESPACE, "get", job, "-o", "json", "--show-managed-fields").stdout
    )
    managers = {f.get("manager") for f in doc["metadata"].get("managedFields", [])}
    # The server's client made it (the API server names it in managedFields), not kubectl.
    assert FIELD_MANAGER in managers, managers
    kubectl("-n", NAMESPACE, "wait", "--for=condition=Complete", job, "--timeout=600s", timeout=620)


# -- RBAC, as the API server decides it ------------------------------------------------------


def can_i(service_account: str, *what: str) -> bool:
    result = kubectl(
        "auth",
        "can-i",
        *what,
        "-n",
        NAMESPACE,
        f"--as=system:serviceaccount:{NAMESPACE}:{service_account}",
        check=False,
    )
    return result.stdout.strip() == "yes"


def service_accounts() -> list[str]:
    names = kubectl("-n", NAMESPACE, "get", "serviceaccounts", "-o", "name").stdout.split()
    return [n.split("/", 1)[1] for n in names if n != "serviceaccount/default"]


def test_rbac_gives_each_service_account_only_what_it_needs(cluster: Path) -> None:
    accounts = service_accounts()
    predictor = f"{PREFIX}-predictor"
    assert predictor in accounts, accounts
    assert can_i(predictor, "create", "jobs.batch")
    assert can_i(predictor, "get", f"cronjobs.batch/{PREFIX}-retrain")
    assert not can_i(predictor, "delete", "jobs.batch")
    assert not can_i(predictor, "create", "pods")
    assert not can_i(predictor, "get", "cronjobs.batch/another")
    secrets = kubectl("-n", NAMESPACE, "get", "secrets", "-o", "name").stdout.split()
    for account in accounts:
        assert not can_i(account, "list", "secrets"), account
        for secret in secrets:
            assert not can_i(account, "get", secret.replace("secret/", "secrets/")), (
                account,
                secret,
            )
    for account in accounts:
        if account != predictor:
            assert not can_i(account, "create", "jobs.batch"), account


# -- upgrade under load, rollback, uninstall --------------------------------------------------


class Load(threading.Thread):
    """Bounded closed-loop traffic to the predictor's Service: one request at a time."""

    def __init__(self, url: str, limit: int = 20_000, seconds: float = 600) -> None:
        super().__init__(daemon=True)
        self.url, self.limit, self.seconds = url, limit, seconds
        self.sent = self.failed = 0
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.halt.is_set() and self.sent < self.limit and time.monotonic() < deadline:
            self.sent += 1
            try:
                status, body = http(
                    "POST", self.url, {"instances": [INSTANCE]}, key=USER_KEY, timeout=5
                )
                if status != 200:
                    self.failed += 1
                    self.errors.append(f"{status} {body}")
            except OSError as error:
                self.failed += 1
                self.errors.append(repr(error))


def predictor_pod_docs() -> list[dict]:
    selector = "app.kubernetes.io/component=predictor"
    found = kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "json").stdout
    return json.loads(found)["items"]


def predictor_pods() -> set[str]:
    return {f"pod/{p['metadata']['name']}" for p in predictor_pod_docs()}


def predictor_images() -> set[str]:
    return {c["image"] for p in predictor_pod_docs() for c in p["spec"]["containers"]}


def test_an_upgrade_rolls_the_predictor_under_load_without_a_failed_request(cluster: Path) -> None:
    tag = chart_version()
    new_tag = f"{tag}-next"
    node.ctr(
        config.state_dir(),
        "images",
        "tag",
        "--force",
        f"docker.io/california-housing/model-server:{tag}",
        f"docker.io/california-housing/model-server:{new_tag}",
        check=True,
    )
    url = f"{service_url(PREFIX + '-predictor')}/v1/models/california-housing:predict"
    before = predictor_pods()
    load = Load(url)
    load.start()
    time.sleep(3)
    started = time.monotonic()
    helm(
        "helm4",
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--reuse-values",
        "--set",
        f"images.modelServer.tag={new_tag}",
        "--set",
        "initialTraining.enabled=false",
        "--wait",
        "--timeout",
        "10m",
        timeout=660,
    )
    # Load goes on until the old pods are gone: their drain and shutdown are what is tested.
    wait_until("the old predictor pods to go", lambda: not predictor_pods() & before, 120)
    rolled = time.monotonic() - started
    time.sleep(2)
    load.halt.set()
    load.join()
    print(
        f"upgrade under load: {load.sent} requests sent, {load.failed} failed, "
        f"old pods gone after {rolled:.0f} s; errors: {load.errors[:5]}"
    )
    assert predictor_images() == {f"california-housing/model-server:{new_tag}"}
    assert not predictor_pods() & before
    assert load.sent > 50
    assert load.failed == 0, load.errors[:10]


def test_rollback_then_uninstall_leaves_only_what_the_chart_keeps(cluster: Path) -> None:
    helm(
        "helm4",
        "rollback",
        RELEASE,
        "1",
        "--namespace",
        NAMESPACE,
        "--wait",
        "--timeout",
        "10m",
        timeout=660,
    )
    # (--wait returns once the new pods are ready; the old ones drain a few seconds more.)
    wait_until(
        "the rolled-back predictor alone",
        lambda: predictor_images() == {f"california-housing/model-server:{chart_version()}"},
        120,
    )
    # What the chart says it keeps: objects annotated helm.sh/resource-policy: keep, and the
    # StatefulSet's claim (Kubernetes never deletes those with the StatefulSet).
    manifest = helm("helm4", "get", "manifest", RELEASE, "--namespace", NAMESPACE).stdout
    kept = {
        f"{doc['kind'].lower()}/{doc['metadata']['name']}"
        for doc in yaml.safe_load_all(manifest)
        if doc
        and (doc["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"
    }
    assert kept, "the chart keeps its data's objects (docs/kubernetes.md)"
    helm("helm4", "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "5m")
    expected = kept | {
        f"persistentvolumeclaim/data-{PREFIX}-postgresql-0",
        "secret/predictor-api-keys",  # the operator's, not the chart's
        "serviceaccount/default",
        "configmap/kube-root-ca.crt",
    }

    def left() -> set[str]:
        kinds = "all,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies,pvc"
        return set(kubectl("-n", NAMESPACE, "get", kinds, "-o", "name").stdout.split())

    # (Pods end after `uninstall --wait` returns: the predictor drains, then stops.)
    wait_until("only what the chart keeps", lambda: left() == expected, 120)
