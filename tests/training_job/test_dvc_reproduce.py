"""A fresh checkout gets the data from the in-repo DVC remote and `dvc repro` reproduces the
committed metrics exactly (fixed seeds, content-hash split)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO, pipeline_env

pytestmark = pytest.mark.slow

DVC = [sys.executable, "-m", "dvc"]


def checkout_copy(target: Path) -> Path:
    """The files git would give a clone (tracked and new, not ignored), as a new repository."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=target, check=True)
    return target


def test_fresh_checkout_pulls_and_reproduces(tmp_path: Path) -> None:
    work = checkout_copy(tmp_path / "clone")
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
