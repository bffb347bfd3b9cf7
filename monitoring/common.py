"""What the dashboards and the rules share, and where their thresholds come from.

Thresholds that belong to the retraining policy or the gate are read from their owners
(housing.policy.RetrainPolicy's defaults, params.yaml's register section), never written here.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from housing.policy import RetrainPolicy

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "california-housing"

# The job label that the chart's ServiceMonitor sets (templates/servicemonitor.yaml); every
# selector of the rules and the dashboards matches it.
JOB = "california-housing-predictor"
# Placeholders in the rule files and the dashboards that the chart fills in: the release's
# namespace (templates/prometheusrule.yaml) and the runbook's absolute URL (the value
# metrics.runbookUrl), so that Alertmanager and Grafana can open it.
NAMESPACE_PLACEHOLDER = "__RELEASE_NAMESPACE__"
RUNBOOK_PLACEHOLDER = "__RUNBOOK_URL__"
# The latency SLO: 99% of successful requests within this histogram bucket (seconds).
SLO_LATENCY_LE = "0.1"
SLO_TARGET = 0.99


@functools.cache
def policy_defaults() -> RetrainPolicy:
    """The retraining policy until an operator edits it (the dashboards' static bands)."""
    return RetrainPolicy()


@functools.cache
def gate_r2_floor() -> float:
    """The promotion gate's floor on a candidate's test R² (params.yaml: register)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    return float(params["register"]["test_r2_floor"])


# PSI over fewer inputs is noise: the drift alert waits until the window holds this many.
DRIFT_MIN_WINDOW = 100
