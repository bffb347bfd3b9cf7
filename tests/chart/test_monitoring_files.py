"""The chart's dashboards and alert rules: one source of truth, shipped as they are."""

from __future__ import annotations

import filecmp
import subprocess

import yaml

from tests.chart.conftest import CHART, REPO, find, render

REPO_DASHBOARDS = REPO / "dashboards"
CHART_DASHBOARDS = CHART / "dashboards"


def test_chart_dashboards_match_the_repository_dashboards() -> None:
    """charts/sync-dashboards.sh keeps the chart's copy equal to dashboards/ (Helm cannot read
    outside the chart). Until dashboards/ exists the chart ships none."""
    chart = sorted(p.name for p in CHART_DASHBOARDS.glob("*.json"))
    repo = (
        sorted(p.name for p in REPO_DASHBOARDS.glob("*.json")) if REPO_DASHBOARDS.is_dir() else []
    )
    assert chart == repo, "run charts/sync-dashboards.sh"
    for name in chart:
        assert filecmp.cmp(CHART_DASHBOARDS / name, REPO_DASHBOARDS / name, shallow=False), name


def test_sync_script_check_mode_agrees() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "charts" / "sync-dashboards.sh"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_configmap_per_dashboard_with_the_sidecar_label(tools) -> None:
    maps = [d for d in find(render("helm4"), "ConfigMap") if "-dashboard-" in d["metadata"]["name"]]
    files = sorted(CHART_DASHBOARDS.glob("*.json"))
    assert len(maps) == len(files)
    for cm, path in zip(sorted(maps, key=lambda m: m["metadata"]["name"]), files, strict=True):
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["data"] == {path.name: path.read_text().rstrip("\n")}


def test_prometheus_rule_ships_the_rule_files_unchanged(tools) -> None:
    groups = []
    for path in sorted((CHART / "rules").glob("*.yaml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    rule = find(render("helm4"), "PrometheusRule")[0]
    assert rule["spec"]["groups"] == groups
    # Recording rules (record:) sit beside the alerts (alert:).
    names = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert {
        "CaliforniaHousingPredictorDown",
        "CaliforniaHousingModelNotReady",
        "CaliforniaHousingHighErrorRatio",
    } <= names


def test_rules_use_the_servers_metric_names_and_job() -> None:
    text = "".join(p.read_text() for p in (CHART / "rules").glob("*.yaml"))
    for metric in (
        "model_server_requests_total",
        "model_server_request_latency_seconds_bucket",
        "model_server_model_ready",
    ):
        assert metric in text
    sm = find(render("helm4"), "ServiceMonitor")[0]
    job = sm["spec"]["endpoints"][0]["relabelings"][0]["replacement"]
    assert f'job="{job}"' in text
