"""dvc.yaml's deps cover the code each stage runs: editing any module it imports, however deep,
makes `dvc status` report the stage changed (a stage listing only its own module would not)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.pipeline import REPO, copy_workspace

STAGES = ("prepare", "tune", "train", "evaluate", "register")
CODE = ("housing", "training_job")
DVC = [sys.executable, "-m", "dvc"]


def record_code(work: Path) -> None:
    """Record the code deps' current hashes in dvc.lock, as `dvc repro` would after a run (the
    committed lock may trail the code: every commit that edits it would have to re-run)."""
    from dvc.repo import Repo

    with Repo(str(work)) as repo, repo.lock:
        for stage in repo.index.stages:
            if stage.cmd:
                for dep in stage.deps:
                    if str(dep.def_path) in CODE:
                        dep.save()
                stage.dvcfile.dump(stage, update_pipeline=False)


def changed_code(work: Path) -> dict[str, set[str]]:
    """stage -> the code deps `dvc status` reports modified (housing, training_job)."""
    done = subprocess.run(
        [*DVC, "status", "--json"], cwd=work, capture_output=True, text=True, check=True
    )
    report: dict[str, set[str]] = {stage: set() for stage in STAGES}
    for stage, changes in json.loads(done.stdout or "{}").items():
        for change in changes:
            if isinstance(change, dict):
                for path, state in change.get("changed deps", {}).items():
                    if state == "modified" and path in CODE:
                        report[stage.split(":")[-1]].add(path)
    return report


def test_editing_an_imported_module_makes_every_stage_stale(tmp_path: Path) -> None:
    work = copy_workspace(tmp_path / "clone")
    record_code(work)
    assert changed_code(work) == {stage: set() for stage in STAGES}
    # Modules every stage imports, which no stage listed while deps named single modules.
    for module, package in (
        ("housing/regression.py", "housing"),
        ("training_job/tracking.py", "training_job"),
    ):
        with (work / module).open("a", encoding="utf-8") as source:
            source.write("\n# an edit\n")
        after = changed_code(work)
        assert {stage for stage, changed in after.items() if package in changed} == set(STAGES)


def test_every_stage_lists_the_code_packages() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGES)
    for name, stage in stages.items():
        assert set(CODE) <= set(stage["deps"]), name
        # Its own namespace of params.yaml; the search also reads the seed and the entry of
        # the candidate it tunes, which train owns.
        extra = ["train.seed", "train.candidates"] if name == "tune" else []
        assert stage["params"] == [name, *extra], name
