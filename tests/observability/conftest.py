"""Fixtures of the observability tests, small to large: the dashboards as generated, the alert
rules as the RENDERED chart ships them (tests/chart's helpers: Helm from scripts/tools.sh),
Prometheus and promtool (scripts/prometheus.sh), and a real Prometheus process.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import find, install_tools, render

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHART = REPO / "charts" / "california-housing"
# Generated into the chart by `python -m monitoring.generate` (tests/chart checks they are fresh).
DASHBOARDS = CHART / "dashboards"
RULES = CHART / "rules"
RUNBOOK = REPO / "docs" / "runbook.md"
RULE_TESTS = sorted(HERE.glob("rules_*_test.yaml"))


@functools.cache
def install_prometheus() -> tuple[str, str]:
    """scripts/prometheus.sh once per session (a no-op when installed): the two binaries."""
    subprocess.run(["bash", str(REPO / "scripts" / "prometheus.sh")], check=True, cwd=REPO)
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    assert prometheus and promtool, "scripts/prometheus.sh did not put them on PATH"
    return prometheus, promtool


@pytest.fixture(scope="session")
def promtool() -> str:
    return install_prometheus()[1]


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return install_prometheus()[0]


def dashboards() -> dict[str, dict[str, Any]]:
    """The dashboards the chart ships (as generated: tests/chart checks that)."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows excluded, collapsed rows' panels included)."""
    found = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


@pytest.fixture(scope="session")
def rendered_rule() -> dict[str, Any]:
    """The PrometheusRule of the chart as `helm template` renders it with default values."""
    install_tools()
    rules = find(render("helm4"), "PrometheusRule")
    assert len(rules) == 1
    return rules[0]


@pytest.fixture(scope="session")
def rendered_rules_file(
    rendered_rule: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The rendered PrometheusRule's spec as a rule file, the form promtool and Prometheus read."""
    path = tmp_path_factory.mktemp("rendered-rules") / "california-housing.rules.yaml"
    path.write_text(yaml.safe_dump(rendered_rule["spec"], sort_keys=False))
    return path


@pytest.fixture(scope="session")
def service_monitor() -> dict[str, Any]:
    install_tools()
    monitors = find(render("helm4"), "ServiceMonitor")
    assert len(monitors) == 1
    return monitors[0]


def alert_rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in spec["groups"] for r in g["rules"] if "alert" in r]


def recording_rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in spec["groups"] for r in g["rules"] if "record" in r]
