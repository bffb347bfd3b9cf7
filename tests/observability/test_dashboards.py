"""The Grafana dashboards: generated from dashboards/generate.py, valid for the SDK, and
following the conventions an on-call engineer relies on.

Whether their queries return data is tested against a real Prometheus in test_prometheus.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.observability.conftest import DASHBOARDS, REPO, RUNBOOK, dashboards, panels

JOB = "california-housing-predictor"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARDS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


BOARDS = dashboards()


def test_the_three_dashboards_exist() -> None:
    assert set(BOARDS) == {
        "california-housing-serving.json",
        "california-housing-model-health.json",
        "california-housing-retraining.json",
    }


def test_committed_json_equals_a_fresh_generation() -> None:
    fresh = load_generator().generate()
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS.glob("*.json")}
    assert committed == fresh, "run python dashboards/generate.py, then charts/sync-dashboards.sh"


def test_generate_script_check_mode_agrees() -> None:
    result = subprocess.run(
        [sys.executable, str(DASHBOARDS / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_parses_back_with_the_sdk(name: str) -> None:
    """from_json keeps only the keys it knows: a round trip that changes nothing means no
    unknown key, no panel without a type, no malformed target."""
    data = BOARDS[name]
    parsed = Dashboard.from_json(data)
    assert json.loads(json.dumps(parsed, cls=JSONEncoder)) == data
    assert parsed.uid == data["uid"] and parsed.title
    for panel in panels(data):
        assert panel.get("type"), panel.get("title")


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_variables_datasource_namespace_model(name: str) -> None:
    variables = {v["name"]: v for v in BOARDS[name]["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "model"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in ("namespace", "model"):
        assert variables[var]["type"] == "query"
        assert variables[var]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert f'job="{JOB}"' in variables[var]["query"]
    assert 'namespace="$namespace"' in variables["model"]["query"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_panel_follows_the_conventions(name: str) -> None:
    board = BOARDS[name]
    text = json.dumps(board)
    # No fixed datasource anywhere: every reference is the variable.
    uids = re.findall(r'"uid": "([^"]*)"', text)
    assert set(uids) - {board["uid"]} == {"${datasource}"}
    ids = []
    for panel in panels(board):
        title = panel["title"]
        ids.append(panel["id"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert "What to do:" in panel.get("description", ""), f"{title}: no on-call advice"
        assert panel["targets"], title
        assert panel.get("options") is not None, title
        for target in panel["targets"]:
            expr = target["expr"]
            assert f'job="{JOB}"' in expr, title
            assert 'namespace="$namespace"' in expr, title
            assert 'model_name="$model"' in expr, title
            # every selector of the query carries the three matchers
            assert expr.count("{") == expr.count('model_name="$model"'), title
        x, w = panel["gridPos"]["x"], panel["gridPos"]["w"]
        assert x >= 0 and x + w <= 24, title
    assert len(ids) == len(set(ids))


def test_dashboard_uids_and_titles_are_unique() -> None:
    assert len({b["uid"] for b in BOARDS.values()}) == len(BOARDS)
    assert len({b["title"] for b in BOARDS.values()}) == len(BOARDS)


def test_runbook_references_in_descriptions_exist() -> None:
    anchors = runbook_anchors()
    for board in BOARDS.values():
        for panel in panels(board):
            for anchor in re.findall(r"docs/runbook\.md#([a-z0-9-]+)", panel["description"]):
                assert anchor in anchors, f"{panel['title']}: #{anchor}"


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the runbook's headings."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def targets(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p["targets"]]
