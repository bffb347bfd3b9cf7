"""Fixtures of the chart tests: the tools (scripts/tools.sh, cached in .tools/) and renders.

Every test here runs the real tools: Helm 3 and Helm 4, kubernetes-validate, checkov, and the
prometheus-operator models, installed by the project's own script so that CI gets them too.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "california-housing"
TOOLS = REPO / ".tools"
BIN = TOOLS / "bin"
TOOLS_PYTHON = TOOLS / "py" / "bin" / "python"
NAMESPACE = "california-housing"
RELEASE = "ch"
HELMS = ("helm3", "helm4")
# The value sets kept under the chart (charts/california-housing/ci/*-values.yaml).
VALUE_SETS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))


@functools.cache
def install_tools() -> Path:
    """Run scripts/tools.sh once per session (a no-op when .tools/ is up to date)."""
    subprocess.run(["bash", str(REPO / "scripts" / "tools.sh")], check=True, cwd=REPO)
    return BIN


@pytest.fixture(scope="session")
def tools() -> Path:
    return install_tools()


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # Keep Helm from reading or writing the user's configuration and caches.
    for var, sub in (
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ):
        env[var] = str(TOOLS / "helm-home" / sub)
    return env


def run_tool(
    *args: str,
    check: bool = True,
    timeout: float = 300,
    input: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    install_tools()
    result = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        env={**tool_env(), **(extra_env or {})},
        cwd=REPO,
        timeout=timeout,
        input=input,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}"
        )
    return result


def helm_args(value_set: str | None, sets: tuple[str, ...]) -> list[str]:
    args = []
    if value_set:
        args += ["-f", str(CHART / "ci" / value_set)]
    for s in sets:
        args += ["--set", s]
    return args


@functools.cache
def render_text(
    helm: str = "helm4", value_set: str | None = None, sets: tuple[str, ...] = ()
) -> str:
    """`helm template` of the chart into NAMESPACE, with a value set and --set overrides."""
    return run_tool(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        *helm_args(value_set, sets),
    ).stdout


def render(
    helm: str = "helm4", value_set: str | None = None, sets: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_text(helm, value_set, sets)) if d]


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a workload, whatever its kind."""
    kind = obj["kind"]
    if kind == "Pod":
        return obj["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "InferenceService":
        return obj["spec"]["predictor"]
    return obj["spec"]["template"]["spec"]


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob", "Pod", "InferenceService")


def schema_problems(script: str, objects: list[dict[str, Any]], *args: str) -> list[str]:
    """What tests/chart/SCRIPT (a validator run by the tools' Python, which has the schema
    libraries) finds wrong in OBJECTS: one line each, none when they are valid."""
    result = subprocess.run(
        [str(TOOLS_PYTHON), str(Path(__file__).with_name(script)), *args],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(result.stdout)
