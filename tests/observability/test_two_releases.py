"""Two releases in two namespaces, one Prometheus: each release's rules judge and record only
its own namespace, and the recorded series keep the `namespace` label, so they stay apart.

The PrometheusRules are rendered by Helm into team-a and team-b and loaded into promtool
(Prometheus's own rule engine) with series from both namespaces.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, find, run_tool

JOB = "california-housing-predictor"
MODEL = "california-housing"
RECORD = "namespace_model_name:model_server_latency_slo_violations:ratio_rate5m"
NAMESPACES = ("team-a", "team-b")
# Requests per minute under the SLO's 100 ms bucket, of 60: team-a all fast, team-b half.
FAST = {"team-a": 60, "team-b": 30}
VIOLATIONS = {"team-a": 0, "team-b": 0.5}
DOWN = "team-b"  # whose predictor cannot be scraped


def rule_spec(namespace: str) -> dict[str, Any]:
    text = run_tool("helm4", "template", "ch", str(CHART), "--namespace", namespace).stdout
    (rule,) = find([d for d in yaml.safe_load_all(text) if d], "PrometheusRule")
    return rule["spec"]


def unscoped(spec: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The rules as they were before: no namespace matcher in any selector."""
    text = yaml.safe_dump(spec, sort_keys=False)
    return yaml.safe_load(
        text.replace(f', namespace="{namespace}"', "").replace(f'{{namespace="{namespace}"}}', "")
    )


def series(namespace: str) -> list[dict[str, str]]:
    labels = f'job="{JOB}", namespace="{namespace}", pod="p-0", model_name="{MODEL}"'
    up = f'job="{JOB}", namespace="{namespace}", pod="p-0"'
    name = "model_server_request_latency_seconds"
    return [
        {"series": f'{name}_bucket{{{labels}, le="0.1"}}', "values": f"0+{FAST[namespace]}x20"},
        {"series": f"{name}_count{{{labels}}}", "values": "0+60x20"},
        {"series": f"up{{{up}}}", "values": "0x20" if namespace == DOWN else "1x20"},
    ]


def expected(releases: tuple[str, ...]) -> list[dict[str, Any]]:
    """What the loaded releases' rules must produce: a recorded series per release, with its
    own namespace's value, and the PredictorDown alert only from the release that is down."""
    down = 'ALERTS{alertname="CaliforniaHousingPredictorDown"}'
    return [
        {
            "expr": RECORD,
            "eval_time": "10m",
            "exp_samples": [
                {
                    "labels": f'{RECORD}{{namespace="{ns}", model_name="{MODEL}"}}',
                    "value": VIOLATIONS[ns],
                }
                for ns in releases
            ],
        },
        {
            "expr": down,
            "eval_time": "10m",
            "exp_samples": [
                {
                    "labels": (
                        'ALERTS{alertname="CaliforniaHousingPredictorDown", alertstate="firing",'
                        f' job="{JOB}", namespace="{ns}", pod="p-0", severity="critical"}}'
                    ),
                    "value": 1,
                }
                for ns in releases
                if ns == DOWN
            ],
        },
    ]


def promtool_test(
    promtool: str, specs: dict[str, dict[str, Any]], tmp_path: Path
) -> tuple[bool, str]:
    """Load the releases' rules (one file each) with both namespaces' series."""
    files = []
    for namespace, spec in specs.items():
        path = tmp_path / f"{namespace}.rules.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        files.append(str(path))
    tests = {
        "rule_files": files,
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [s for ns in NAMESPACES for s in series(ns)],
                "promql_expr_test": expected(tuple(specs)),
            }
        ],
    }
    path = tmp_path / "releases.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    print(result.stdout + result.stderr)
    return result.returncode == 0, result.stdout + result.stderr


def test_two_releases_record_their_own_series_apart(promtool: str, tmp_path: Path) -> None:
    specs = {ns: rule_spec(ns) for ns in NAMESPACES}
    for namespace, spec in specs.items():
        rule = next(r for g in spec["groups"] for r in g["rules"] if r.get("record") == RECORD)
        assert f'namespace="{namespace}"' in rule["expr"]
    ok, output = promtool_test(promtool, specs, tmp_path)
    assert ok, output


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_each_release_alone_records_and_alerts_on_its_namespace_only(
    promtool: str, tmp_path: Path, namespace: str
) -> None:
    ok, output = promtool_test(promtool, {namespace: rule_spec(namespace)}, tmp_path)
    assert ok, output


def test_the_check_fails_for_unscoped_rules(promtool: str, tmp_path: Path) -> None:
    """Without the namespace matcher (as before), team-a's rules record team-b's series and
    raise team-b's alert too."""
    ok, output = promtool_test(
        promtool, {"team-a": unscoped(rule_spec("team-a"), "team-a")}, tmp_path
    )
    assert not ok
    assert 'namespace="team-b"' in output
