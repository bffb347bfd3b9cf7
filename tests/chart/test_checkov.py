"""checkov on the chart: no failed check; every suppression carries its written reason."""

from __future__ import annotations

import json
from pathlib import Path

from tests.chart.conftest import CHART, VALUE_SETS, render_text, run_tool


def checkov(*args: str) -> list[dict]:
    result = run_tool("checkov", "--skip-download", "-o", "json", *args, check=False)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    # Without helm on PATH checkov prints "no runners" and passes silently: insist on results.
    assert reports and all("results" in r for r in reports), result.stdout[:2000]
    return reports


def assert_clean(reports: list[dict]) -> None:
    for r in reports:
        failed = r["results"]["failed_checks"]
        assert not failed, [(c["check_id"], c["resource"], c["check_name"]) for c in failed]
        assert r["summary"]["passed"] > 100
        for skipped in r["results"]["skipped_checks"]:
            reason = skipped.get("check_result", {}).get("suppress_comment", "")
            assert len(reason) > 30, (skipped["check_id"], skipped["resource"], reason)


def test_checkov_helm_framework_on_the_chart(tools) -> None:
    assert_clean(
        checkov(
            "-d", str(CHART), "--framework", "helm", "--config-file", str(CHART / ".checkov.yaml")
        )
    )


def test_checkov_on_every_value_set_rendered_into_a_namespace(tools, tmp_path: Path) -> None:
    # One checkov run over every rendering: its start-up (~7 s) dominates a value set's check.
    for value_set in VALUE_SETS:
        (tmp_path / f"{Path(value_set).stem}.yaml").write_text(render_text("helm4", value_set))
    reports = checkov("-d", str(tmp_path), "--framework", "kubernetes")
    assert_clean(reports)
    checked = {Path(c["file_path"]).stem for r in reports for c in r["results"]["passed_checks"]}
    assert checked == {Path(v).stem for v in VALUE_SETS}
