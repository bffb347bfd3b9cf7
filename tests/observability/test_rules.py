"""The alert and recording rules as the chart ships them: promtool checks them, unit-tests every
alert (tests/observability/rules_*_test.yaml: a firing and a not-firing case each), and each
alert carries a severity, a summary, a description and a runbook section that exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from housing.policy import RetrainPolicy
from monitoring.common import JOB, RUNBOOK_PLACEHOLDER
from monitoring.common import NAMESPACE_PLACEHOLDER as NAMESPACE
from tests.observability.conftest import RULE_TESTS, RULES, alert_rules, recording_rules
from tests.observability.test_dashboards import runbook_anchors

SEVERITIES = {"critical", "warning", "info"}


def rule_files_spec() -> dict[str, Any]:
    groups = []
    for path in sorted(RULES.glob("*.yaml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    return {"groups": groups}


def test_promtool_check_rules_on_the_rendered_chart(
    promtool: str, rendered_rules_file: Path
) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(rendered_rules_file)], capture_output=True, text=True
    )
    print(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    spec = yaml.safe_load(rendered_rules_file.read_text())
    count = len(alert_rules(spec)) + len(recording_rules(spec))
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_check_rules_on_the_rule_files(promtool: str) -> None:
    """The generated files themselves, placeholders and all (the chart fills those in)."""
    files = [str(p) for p in sorted(RULES.glob("*.yaml"))]
    result = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_against_the_rendered_rules(
    promtool: str, rendered_rule: dict[str, Any], test_file: Path, tmp_path: Path
) -> None:
    """The unit tests, run against the rules of the rendered PrometheusRule: the groups of the
    rule files the test file names, taken from the rendered spec."""
    tests = yaml.safe_load(test_file.read_text())
    wanted = {
        group["name"]
        for name in tests["rule_files"]
        for group in yaml.safe_load((test_file.parent / name).read_text())["groups"]
    }
    groups = [g for g in rendered_rule["spec"]["groups"] if g["name"] in wanted]
    assert {g["name"] for g in groups} == wanted
    rules = tmp_path / "rendered.rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    tests["rule_files"] = [str(rules)]
    copy = tmp_path / test_file.name
    copy.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", str(copy)], capture_output=True, text=True, timeout=120
    )
    print(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def unit_test_cases() -> dict[str, dict[str, int]]:
    """alertname -> {"firing": n, "quiet": n} over every alert_rule_test case."""
    cases: dict[str, dict[str, int]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "firing" if case.get("exp_alerts") else "quiet"
                counts = cases.setdefault(case["alertname"], {"firing": 0, "quiet": 0})
                counts[kind] += 1
    return cases


def test_every_alert_has_a_firing_and_a_not_firing_unit_test(rendered_rule: dict[str, Any]) -> None:
    alerts = {r["alert"] for r in alert_rules(rendered_rule["spec"])}
    cases = unit_test_cases()
    assert set(cases) <= alerts, f"unit tests of unknown alerts: {set(cases) - alerts}"
    for alert in sorted(alerts):
        assert cases.get(alert, {}).get("firing"), f"{alert}: no firing case"
        assert cases.get(alert, {}).get("quiet"), f"{alert}: no not-firing case"


def test_the_required_alerts_exist() -> None:
    alerts = {r["alert"] for r in alert_rules(rule_files_spec())}
    assert {
        "CaliforniaHousingPredictorDown",
        "CaliforniaHousingModelNotReady",  # server not ready
        "CaliforniaHousingHighErrorRatio",  # error ratio above a threshold
        "CaliforniaHousingLatencySLOBurnFast",  # multi-window multi-burn-rate
        "CaliforniaHousingLatencySLOBurnSlow",
        "CaliforniaHousingFeatureDrift",  # KS > critical or PSI > drift_threshold for 15m
        "CaliforniaHousingLiveErrorDegraded",  # live R² < offline - 0.1, or < 0.5
        "CaliforniaHousingNoFeedback",
        "CaliforniaHousingPredictionLogBacklog",
        "CaliforniaHousingPredictionLogDropping",
        "CaliforniaHousingPredictionLogSpillFilling",  # before the pod would be evicted
        "CaliforniaHousingRetrainFailed",
        "CaliforniaHousingRetrainNotRunning",
        "CaliforniaHousingRetrainStale",
        "CaliforniaHousingChampionNotPromoted",  # model_server_retrain_last_go_unpromoted
    } <= alerts


def test_thresholds_are_the_agreed_ones() -> None:
    rules = {r["alert"]: r for r in alert_rules(rule_files_spec())}
    drift = rules["CaliforniaHousingFeatureDrift"]
    assert "model_server_feature_drift_psi" in drift["expr"]
    # The KS branch compares with the server's critical value (at the policy's drift_alpha).
    ks = r"model_server_feature_drift_ks\{[^}]*\}\s*>\s*model_server_feature_drift_ks_critical\{"
    assert re.search(ks, drift["expr"])
    # Against the policy's own gauge, never a copy of its threshold (housing.policy).
    assert 'setting="drift_threshold"' in drift["expr"] and "0.2" not in drift["expr"]
    assert drift["for"] == "15m"
    live = rules["CaliforniaHousingLiveErrorDegraded"]["expr"]
    assert "model_server_model_offline_r2" in live
    for setting in ("degradation_margin", "r2_floor", "min_feedback"):
        matchers = f'job="{JOB}", namespace="{NAMESPACE}", setting="{setting}"'
        assert f"model_server_retrain_policy{{{matchers}}}" in live
    policy = RetrainPolicy()
    literals = {str(policy.degradation_margin), str(policy.r2_floor), str(policy.min_feedback)}
    assert not literals & set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", live)), live
    assert (
        "model_server_retrain_last_go_unpromoted"
        in (rules["CaliforniaHousingChampionNotPromoted"]["expr"])
    )
    burn = rules["CaliforniaHousingLatencySLOBurnFast"]["expr"]
    assert "(14.4 * 0.01)" in burn and "(6 * 0.01)" in burn
    slo = next(
        r for r in recording_rules(rule_files_spec()) if r["record"].endswith(":ratio_rate5m")
    )
    assert 'le="0.1"' in slo["expr"]


def test_every_alert_is_labelled_and_documented() -> None:
    anchors = runbook_anchors()
    documented = set()
    for rule in alert_rules(rule_files_spec()):
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        url = notes["runbook_url"]
        assert url == f"{RUNBOOK_PLACEHOLDER}#{name.lower()}", name
        assert name.lower() in anchors, f"docs/runbook.md has no section {name}"
        documented.add(name.lower())
    # one runbook section per alert, and no section for an alert that does not exist
    alert_sections = {a for a in anchors if a.startswith("californiahousing")}
    assert alert_sections == documented


def test_every_selector_uses_the_service_monitors_job_and_namespace(
    service_monitor: dict[str, Any], rendered_rule: dict[str, Any]
) -> None:
    """Scoped to the release: the rendered rules select the release's namespace everywhere."""
    job = service_monitor["spec"]["endpoints"][0]["relabelings"][0]["replacement"]
    namespace = rendered_rule["metadata"]["namespace"]
    spec = rendered_rule["spec"]
    for rule in alert_rules(spec) + recording_rules(spec):
        expr = rule["expr"]
        selectors = re.findall(r"\b(?:model_server_\w+|up)\{([^}]*)\}", expr)
        bare = re.findall(r"(?<![:\w])(model_server_\w+|up)(?![\w:{])", expr)
        assert not bare, f"{rule.get('alert') or rule['record']}: selector without job: {bare}"
        for matchers in selectors:
            name = rule.get("alert") or rule["record"]
            assert matchers.startswith(f'job="{job}", namespace="{namespace}"'), name
        # recorded series (another release records the same names) by namespace too
        recorded = re.findall(r"\b(\w+:\w+:\w+)(\{[^}]*\})?", expr)
        for metric, matchers in recorded:
            assert matchers == f'{{namespace="{namespace}"}}', (rule.get("alert"), metric)
