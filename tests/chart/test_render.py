"""The chart lints and renders with Helm 3 and Helm 4 under every kept value set; the schema
rejects bad values; the rendered objects say what the issue asks for."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chart.conftest import (
    CHART,
    HELMS,
    NAMESPACE,
    REPO,
    VALUE_SETS,
    WORKLOAD_KINDS,
    find,
    helm_args,
    pod_spec,
    render,
    render_text,
    run_tool,
)


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_strict(tools, helm: str, value_set: str) -> None:
    result = run_tool(helm, "lint", "--strict", str(CHART), *helm_args(value_set, ()))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm3_and_helm4_render_the_same(tools, value_set: str) -> None:
    def normalised(helm: str) -> str:
        # The generated database password is random on every render.
        return re.sub(r"(?m)^(  password: ).*$", r"\1<random>", render_text(helm, value_set))

    assert normalised("helm3") == normalised("helm4")


BAD_VALUES = {
    "unknown top-level key": ["replicaCount=2"],
    "typo in a nested key": ["predictor.autoscalling.enabled=true"],
    "string where an integer goes": ["predictor.replicas=two"],
    "unknown KServe mode": ["kserve.deploymentMode=Fancy"],
    "port out of range": ["predictor.httpPort=80"],
    "unknown DVC remote type": ["training.dvcRemote.type=gcs"],
    "S3 remote without URL": ["training.dvcRemote.type=s3"],
    "not an s3 URL": ["training.dvcRemote.type=s3", "training.dvcRemote.s3.url=/mnt/x"],
    "external MLflow without URL": ["mlflow.enabled=false"],
    "external DB with nothing to reach it": ["postgresql.enabled=false"],
    "bad digest": ["images.modelServer.digest=latest"],
    "bad log level": ["predictor.logLevel=LOUD"],
    "resources without limits": ["predictor.resources.limits=null"],
    "spill size not in Mi or Gi": ["predictor.predictionSpill.sizeLimit=1G"],
    "relative runbook URL": ["metrics.runbookUrl=docs/runbook.md"],
    "unknown log format": ["logFormat=xml"],
    "telemetry not a boolean": ["telemetry.enabled=maybe"],
    "runbook URL with an anchor": ["metrics.runbookUrl=https://x.example/runbook.md#top"],
    "PDB budget not a count or percent": ["predictor.podDisruptionBudget.maxUnavailable=half"],
    "spread without topologyKey": [
        "predictor.topologySpreadConstraints[0].maxSkew=1",
        "predictor.topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
    ],
    "bad priority class name": ["predictor.priorityClassName=Not_A_Name"],
    "extra env without a name": ["training.extraEnv[0].value=x"],
    "extra mount with a relative path": [
        "mlflow.extraVolumeMounts[0].name=x",
        "mlflow.extraVolumeMounts[0].mountPath=data",
    ],
    "ingress path type unknown": [
        "kserve.enabled=false",
        "predictor.ingress.enabled=true",
        "predictor.ingress.hosts[0].host=a.example.com",
        "predictor.ingress.hosts[0].paths[0].path=/",
        "predictor.ingress.hosts[0].paths[0].pathType=Glob",
    ],
    "HTTPRoute without a Gateway": ["kserve.enabled=false", "predictor.httpRoute.enabled=true"],
}


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("sets", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_schema_rejects_bad_values(tools, helm: str, sets: list[str]) -> None:
    result = run_tool(helm, "template", "x", str(CHART), *helm_args(None, tuple(sets)), check=False)
    assert result.returncode != 0, f"{sets} rendered:\n{result.stdout[:500]}"
    assert (
        "schema" in result.stderr.lower()
        or "values don't meet" in result.stderr.lower()
        or "at '" in result.stderr
    ), result.stderr


def test_trigger_without_cronjob_is_an_error(tools) -> None:
    result = run_tool(
        "helm4",
        "template",
        "x",
        str(CHART),
        "--set",
        "retrain.trigger.enabled=true",
        "--set",
        "retrain.enabled=false",
        check=False,
    )
    assert (
        result.returncode != 0 and "retrain.trigger.enabled needs retrain.enabled" in result.stderr
    )


# Kubernetes objects passed through as they are: their fields are Kubernetes' own, documented
# by the comment above the block.
PASSTHROUGH = {
    "resources",
    "podSecurityContext",
    "containerSecurityContext",
    "dns",
    "prometheus",
    "kubeApiServer",
    "probes",
    "hosts",
}


def test_every_value_is_documented_in_values_yaml() -> None:
    """Every leaf value of values.yaml has a prose comment right above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):\s*(.*)$", line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inside_passthrough = any(k in PASSTHROUGH for _, k in stack)
        stack.append((indent, key))
        if rest == "" or inside_passthrough:  # a group of documented values
            continue
        previous = next(lines[j] for j in range(i - 1, -1, -1) if lines[j].strip())
        if not previous.strip().startswith("#"):
            undocumented.append(f"values.yaml:{i + 1}: {line.strip()}")
    assert not undocumented, undocumented


def all_renders():
    for value_set in VALUE_SETS:
        yield value_set, render("helm4", value_set)


def test_every_object_is_labelled_and_namespaced(tools) -> None:
    for value_set, docs in all_renders():
        for d in docs:
            meta = d["metadata"]
            labels = meta.get("labels", {})
            for key in ("name", "instance", "version", "component", "managed-by", "part-of"):
                assert f"app.kubernetes.io/{key}" in labels, (value_set, d["kind"], meta["name"])
            assert meta.get("namespace") == NAMESPACE, (value_set, d["kind"], meta["name"])


def containers_of(d):
    spec = pod_spec(d)
    return spec.get("initContainers", []) + spec["containers"]


def test_pods_are_locked_down(tools) -> None:
    for value_set, docs in all_renders():
        for d in docs:
            if d["kind"] not in WORKLOAD_KINDS:
                continue
            spec = pod_spec(d)
            where = (value_set, d["kind"], d["metadata"]["name"])
            psc = spec["securityContext"]
            assert psc["runAsNonRoot"] is True, where
            assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
            for c in containers_of(d):
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert sc["runAsNonRoot"] is True, where
                assert set(c["resources"]["requests"]) >= {"cpu", "memory"}, where
                assert set(c["resources"]["limits"]) >= {"cpu", "memory"}, where
                for env in c.get("env", []):
                    # Secrets only by reference: no literal password or key in any manifest.
                    value = env.get("value", "")
                    assert not re.search(r"://[^/:$]+:[^$@/]+@", value), (where, env)
                    if re.search(r"PASSWORD|SECRET|TOKEN", env["name"]) and "valueFrom" not in env:
                        assert env["name"].endswith("_FILE"), (where, env)
            token = spec.get("automountServiceAccountToken")
            assert token is False or (
                (token is True and "predictor" in d["metadata"]["name"])
                or d["kind"] == "InferenceService"
            ), where


def test_no_secret_values_in_chart_defaults(tools) -> None:
    secrets = find(render("helm4"), "Secret")
    # Only the generated PostgreSQL password; the chart never takes a secret as a value.
    assert [s["metadata"]["name"] for s in secrets] == ["ch-california-housing-postgresql"]


def predictor_container(docs):
    isvc = find(docs, "InferenceService")
    if isvc:
        return isvc[0]["spec"]["predictor"]["containers"][0]
    return find(docs, "Deployment", "-predictor")[0]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_predictor_probes_call_the_servers_health_routes(tools, value_set: str) -> None:
    c = predictor_container(render("helm4", value_set))
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    http_port = int(next(e["value"] for e in c["env"] if e["name"] == "MODEL_SERVER_HTTP_PORT"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] == http_port
    assert c["command"] == ["python", "-m", "model_server"]


@pytest.mark.parametrize(
    ("size", "limit"), [("1Gi", 966_367_641), ("512Mi", 483_183_820), ("20Gi", 19_327_352_832)]
)
def test_the_spill_limit_is_90_percent_of_the_spill_volume(tools, size: str, limit: int) -> None:
    """The server drops (and counts) rows before the kubelet would evict the pod for them."""
    docs = render("helm4", None, (f"predictor.predictionSpill.sizeLimit={size}",))
    c = predictor_container(docs)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert int(env["MODEL_SERVER_SPILL_MAX_BYTES"]) == limit
    volumes = {v["name"]: v for v in pod_spec(find(docs, "InferenceService")[0])["volumes"]}
    assert volumes["prediction-spill"]["emptyDir"]["sizeLimit"] == size
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["prediction-spill"] == env["MODEL_SERVER_SPILL_DIR"]


def test_compiled_trees_are_off_unless_asked_and_then_cached_in_an_emptydir(tools) -> None:
    """The compile needs more memory than the default limit: opt-in, with its own volume."""
    docs = render("helm4")
    c = predictor_container(docs)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MODEL_SERVER_COMPILED_TREES"] == "false"
    assert "MODEL_SERVER_COMPILED_TREES_DIR" not in env
    assert "compiled-trees" not in {m["name"] for m in c["volumeMounts"]}
    for mode in ("true", "false"):
        docs = render(
            "helm4",
            None,
            (
                "predictor.compiledTrees.enabled=true",
                "predictor.compiledTrees.sizeLimit=32Mi",
                f"kserve.enabled={mode}",
            ),
        )
        c = predictor_container(docs)
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["MODEL_SERVER_COMPILED_TREES"] == "true"
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["compiled-trees"] == env["MODEL_SERVER_COMPILED_TREES_DIR"]
        workload = (
            find(docs, "InferenceService")
            if mode == "true"
            else find(docs, "Deployment", "-predictor")
        )[0]
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        assert volumes["compiled-trees"]["emptyDir"]["sizeLimit"] == "32Mi"


def test_kserve_mode_is_explicit_and_container_is_custom(tools) -> None:
    docs = render("helm4")
    isvc = find(docs, "InferenceService")[0]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert isvc["spec"]["predictor"]["containers"][0]["name"] == "kserve-container"
    assert not find(docs, "Deployment", "-predictor")
    autoscaled = find(
        render("helm4", None, ("predictor.autoscaling.enabled=true",)), "InferenceService"
    )[0]
    assert autoscaled["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    assert autoscaled["spec"]["predictor"]["scaleMetric"] == "cpu"


def test_kserve_off_makes_deployment_service_and_hpa(tools) -> None:
    docs = render("helm4", "kserve-off-values.yaml")
    assert not find(docs, "InferenceService")
    assert find(docs, "Deployment", "-predictor")
    svc = find(docs, "Service", "-predictor")[0]
    assert [p["name"] for p in svc["spec"]["ports"]] == ["http"]
    hpa = find(docs, "HorizontalPodAutoscaler")[0]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)


def test_retraining_cronjob(tools) -> None:
    cron = find(render("helm4"), "CronJob")[0]
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit", "startingDeadlineSeconds"):
        assert isinstance(spec[key], int)
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0 and job["ttlSecondsAfterFinished"] > 0
    c = job["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "-m", "training_job"] and c["args"] == ["retrain"]
    initial = find(render("helm4"), "Job")[0]["spec"]["template"]["spec"]["containers"][0]
    assert initial["args"] == ["pipeline"]


def rbac(docs):
    return (
        find(docs, "Role")
        + find(docs, "RoleBinding")
        + find(docs, "ClusterRole")
        + find(docs, "ClusterRoleBinding")
    )


def test_rbac_only_with_the_retrain_trigger(tools) -> None:
    assert not rbac(render("helm4"))
    docs = render("helm4", "kserve-off-values.yaml")  # trigger on
    role = find(docs, "Role")[0]
    assert role["rules"] == [
        {
            "apiGroups": ["batch"],
            "resources": ["cronjobs"],
            "resourceNames": ["ch-california-housing-retrain"],
            "verbs": ["get"],
        },
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]},
    ]
    binding = find(docs, "RoleBinding")[0]
    assert binding["subjects"][0]["name"] == "ch-california-housing-predictor"
    c = predictor_container(docs)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MODEL_SERVER_RETRAIN_LAUNCHER"] == "kubernetes"
    assert env["MODEL_SERVER_RETRAIN_CRONJOB"] == "ch-california-housing-retrain"
    assert find(docs, "CronJob")[0]["metadata"]["name"] == "ch-california-housing-retrain"
    assert "MODEL_SERVER_RETRAIN_LAUNCHER" not in {
        e["name"] for e in predictor_container(render("helm4"))["env"]
    }


def policies(docs):
    return {
        d["metadata"]["name"].removeprefix("ch-california-housing-"): d["spec"]
        for d in find(docs, "NetworkPolicy")
    }


def ports(rules):
    return sorted({p["port"] for r in rules for p in r.get("ports", [])})


def test_network_policies_allow_exactly_the_needed_flows(tools) -> None:
    p = policies(render("helm4"))
    assert set(p) == {"default-deny", "predictor", "training", "mlflow", "postgresql", "test"}
    assert p["default-deny"] == {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "california-housing",
                "app.kubernetes.io/instance": "ch",
            }
        },
        "policyTypes": ["Ingress", "Egress"],
    }
    for spec in p.values():
        assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert ports(p["predictor"]["ingress"]) == [8080]
    assert ports(p["predictor"]["egress"]) == [53, 5000, 5432]
    assert ports(p["training"]["egress"]) == [53, 5000, 5432]
    assert p["training"]["ingress"] == []
    assert ports(p["mlflow"]["ingress"]) == [5000]
    assert ports(p["mlflow"]["egress"]) == [53, 5432]
    assert ports(p["postgresql"]["ingress"]) == [5432] and p["postgresql"]["egress"] == []
    assert ports(p["test"]["egress"]) == [53, 8080]
    # The API server only with the trigger.
    trig = policies(render("helm4", "kserve-off-values.yaml"))
    assert ports(trig["predictor"]["egress"]) == [53, 443, 5000, 5432, 6443]
    assert ports(trig["predictor"]["ingress"]) == [8080]


def test_external_services_replace_the_bundled_ones(tools) -> None:
    docs = render("helm4", "external-values.yaml")
    assert not find(docs, "StatefulSet") and not find(docs, "Deployment", "-mlflow")
    c = predictor_container(docs)
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.example.com"
    assert env["MODEL_SERVER_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "california-housing-db-urls",
        "key": "serving-url",
    }
    host = predictor_container(render("helm4", "external-host-values.yaml"))
    url = next(e["value"] for e in host["env"] if e["name"] == "MODEL_SERVER_DATABASE_URL")
    assert url == (
        "postgresql+psycopg://mlops:$(CH_DATABASE_PASSWORD)@"
        "postgres.databases.svc.cluster.local:5432/serving?sslmode=require"
    )


def training_env(docs, kind="CronJob"):
    c = pod_spec(find(docs, kind)[0])["containers"][0]
    return {e["name"]: e for e in c["env"]}


def test_s3_remote_and_landing(tools) -> None:
    env = training_env(render("helm4", "s3-values.yaml"))
    assert env["TRAINING_DVC_REMOTE"]["value"] == "s3://cal-housing/dvc"
    assert env["TRAINING_LANDING_URL"]["value"] == "s3://cal-housing/landing"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "california-housing-s3"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.minio.svc.cluster.local:9000"
    default = training_env(render("helm4"))
    assert "TRAINING_DVC_REMOTE" not in default  # the image's embedded remote


def test_pvc_remote_and_landing(tools) -> None:
    docs = render("helm4", "pvc-values.yaml")
    env = training_env(docs, "Job")
    assert env["TRAINING_DVC_REMOTE"]["value"] == "/mnt/dvc-remote"
    assert env["TRAINING_LANDING_URL"]["value"] == "/mnt/landing"
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(find(docs, "Job")[0])["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"ch-california-housing-dvc-remote", "california-housing-landing"}
    assert [c["metadata"]["name"] for c in find(docs, "PersistentVolumeClaim", "-dvc-remote")]


def test_monitoring_toggles(tools) -> None:
    on = render("helm4")
    assert find(on, "ServiceMonitor") and find(on, "PrometheusRule")
    off = render("helm4", "monitoring-off-values.yaml")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert not find(off, kind), kind
    predictor_policy = policies(off)["predictor"]
    assert len(predictor_policy["ingress"]) == 1  # clients only, no Prometheus
    assert not [
        d for d in off if d["kind"] == "ConfigMap" and "-dashboard-" in d["metadata"]["name"]
    ]


def test_helm_test_sends_a_v1_prediction(tools) -> None:
    for value_set, docs in all_renders():
        pod = next(d for d in docs if d["kind"] == "Pod")
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        script = pod["spec"]["containers"][0]["args"][0]
        assert "/v1/models/california-housing:predict" in script, value_set
        assert '"instances"' in script


def test_notes_tell_the_next_commands(tools) -> None:
    result = run_tool(
        "helm4",
        "install",
        RELEASE_FOR_NOTES,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
    )
    for text in ("helm test", "kubectl -n california-housing wait", "create job --from=cronjob/"):
        assert text in result.stdout, text


RELEASE_FOR_NOTES = "ch"


def test_the_chart_readme_is_generated_from_values_yaml(tmp_path: Path) -> None:
    """charts/*/README.md is helm-docs' output of values.yaml and README.md.gotmpl: editing a
    value's comment without `bash scripts/chart-docs.sh` fails here (so does CI)."""
    copy = tmp_path / "charts" / CHART.name
    shutil.copytree(CHART, copy)
    (copy / "README.md").unlink()
    subprocess.run(
        ["bash", str(REPO / "scripts" / "chart-docs.sh"), str(tmp_path / "charts")],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    assert (copy / "README.md").read_text() == (CHART / "README.md").read_text(), (
        "charts/california-housing/README.md is stale: run bash scripts/chart-docs.sh"
    )
