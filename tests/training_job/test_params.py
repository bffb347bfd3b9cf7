"""params.yaml is typed: a typo or a bad value stops the run and names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.pipeline import REPO
from training_job.params import ParamsError, load_params


def test_the_projects_params_load() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.registration.model_name == "california-housing"
    assert set(params.train.candidates) >= {"linear_regression", "decision_tree"}


def edited(tmp_path: Path, edit: dict) -> Path:
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    for dotted, value in edit.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"prepare\.test_pct: Extra inputs"):
        load_params(edited(tmp_path, {"prepare.test_pct": 10}))


def test_bad_value_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"register\.test_r2_floor"):
        load_params(edited(tmp_path, {"register.test_r2_floor": "high"}))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "absent.yaml")
