"""A fresh checkout gets the data from the in-repo DVC remote and `dvc repro` reproduces the
committed metrics exactly (fixed seeds, content-hash split)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pipeline import REPO, copy_workspace, pipeline_env

pytestmark = pytest.mark.slow

DVC = [sys.executable, "-m", "dvc"]


def test_fresh_checkout_pulls_and_reproduces(tmp_path: Path) -> None:
    work = copy_workspace(tmp_path / "clone")
    env = pipeline_env(work / "state")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    assert not (work / "data/raw/cal_housing.data").exists()

    def dvc(*args: str) -> str:
        done = subprocess.run([*DVC, *args], cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    dvc("pull", "--allow-missing")
    assert (work / "data/raw/cal_housing.data").read_bytes() == (
        REPO / "data/raw/cal_housing.data"
    ).read_bytes()

    committed = {
        name: json.loads((REPO / "metrics" / name).read_text())
        for name in ("prepare.json", "train.json", "evaluate.json")
    }
    dvc("repro", "--force")
    for name, expected in committed.items():
        assert json.loads((work / "metrics" / name).read_text()) == expected, name
    # DVC agrees: no metric moved against the snapshot commit.
    assert json.loads(dvc("metrics", "diff", "--json")) == {}
    dvc("plots", "show", "--out", "plots_html")
    assert (work / "plots_html" / "index.html").exists()
