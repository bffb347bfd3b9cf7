"""The chart keeps MLflow's and DVC's telemetry off: the env it sets on every container, and
that the libraries the images run do read it that way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.chart.conftest import find, pod_spec, render

ROUTES = "routes-kserve-off-values.yaml"  # logFormat: text, telemetry.enabled: true
MLFLOW_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
DVC_OFF = {"DVC_NO_ANALYTICS": "1"}
SWITCHES = {*MLFLOW_OFF, *DVC_OFF}


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The containers that run MLflow (all four) or DVC (the jobs), by role."""
    isvc = find(docs, "InferenceService")
    predictor = (
        isvc[0]["spec"]["predictor"]
        if isvc
        else pod_spec(find(docs, "Deployment", "-predictor")[0])
    )
    return {
        "predictor": predictor["containers"][0],
        "training": pod_spec(find(docs, "Job")[0])["containers"][0],
        "retrain": pod_spec(find(docs, "CronJob")[0])["containers"][0],
        "mlflow": pod_spec(find(docs, "Deployment", "-mlflow")[0])["containers"][0],
    }


def test_telemetry_is_off_in_every_container_that_runs_mlflow_or_dvc(tools) -> None:
    for value_set in (None, "kserve-off-values.yaml"):
        for role, container in containers(render("helm4", value_set)).items():
            values = env(container)
            assert MLFLOW_OFF.items() <= values.items(), role
            runs_dvc = role in ("training", "retrain")
            assert (DVC_OFF.items() <= values.items()) == runs_dvc, role


def test_telemetry_enabled_sets_none_of_the_switches(tools) -> None:
    for role, container in containers(render("helm4", ROUTES)).items():
        assert not SWITCHES & env(container).keys(), role


def library_verdicts(cases: list[dict[str, str]], tmp_path: Path) -> list[tuple[bool, bool]]:
    """(MLflow's telemetry disabled?, DVC's analytics enabled?) under each case's variables, in
    one clean process (no CI or pytest variable: MLflow turns itself off in CI; no user
    configuration). Both libraries read the variables at each call, so one import serves all."""
    code = (
        "import json, os, sys\n"
        "from mlflow.telemetry.utils import is_telemetry_disabled\n"
        "from dvc.analytics import is_enabled\n"
        "base = dict(os.environ)\n"
        "out = []\n"
        "for case in json.loads(sys.argv[1]):\n"
        "    os.environ.clear(); os.environ.update({**base, **case})\n"
        "    out.append([is_telemetry_disabled(), is_enabled()])\n"
        "print(json.dumps(out))\n"
    )
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cases)],
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
        check=True,
        timeout=120,
    )
    return [(a, b) for a, b in json.loads(result.stdout)]


def test_mlflow_and_dvc_read_the_charts_switches(tools, tmp_path: Path) -> None:
    training = containers(render("helm4"))["training"]
    switches = {k: v for k, v in env(training).items() if k in SWITCHES}
    with_switches, without, convention = library_verdicts(
        [switches, {}, {"DO_NOT_TRACK": "1"}], tmp_path
    )
    assert with_switches == (True, False)
    # ... and without them both would send data: the check can fail
    assert without == (False, True)
    # MLflow takes DO_NOT_TRACK only as "true": the convention's 1 would not stop it
    assert convention[0] is False
