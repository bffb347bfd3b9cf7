"""A Job's workspace: the project's pipeline files copied to a writable volume, data pulled."""

from __future__ import annotations

from pathlib import Path

from tests.support.pipeline import copy_workspace
from training_job.datafile import file_md5
from training_job.workspace import materialize


def test_materialize_copies_the_pipeline_and_pulls_the_data(tmp_path: Path) -> None:
    project = copy_workspace(tmp_path / "image")  # what the training image holds, no data
    workspace = materialize(tmp_path / "volume", project, remote=None)
    assert (workspace / "dvc.yaml").read_text() == (project / "dvc.yaml").read_text()
    assert file_md5(workspace / "data/raw/cal_housing.data") == "01d0b31df796a8d4b7a6ce4c37f42dbc"
    assert not (workspace / "training_job").exists()  # code is not read from the workspace
    # DVC's pickled state lives in the workspace, private to its user (PYSEC-2026-2447).
    site_cache = workspace / ".dvc" / "site-cache"
    assert f"site_cache_dir = {site_cache}" in (workspace / ".dvc/config.local").read_text()
    assert site_cache.stat().st_mode & 0o777 == 0o700
    # Idempotent: a second call (the retrain after the initial run) copies nothing again.
    assert materialize(workspace, project, remote=None) == workspace


def test_a_configured_remote_is_used(tmp_path: Path) -> None:
    project = copy_workspace(tmp_path / "image")
    pvc = project / "dvc-remote"  # stands for a PVC path holding the remote
    workspace = materialize(tmp_path / "volume", project, remote=str(pvc))
    config = (workspace / ".dvc/config.local").read_text()
    assert "deployed" in config and str(pvc) in config
    assert (workspace / "data/raw/cal_housing.data").exists()


def test_the_repository_itself_is_left_alone(tmp_path: Path) -> None:
    project = copy_workspace(tmp_path / "repo")
    assert materialize(project, project, remote=None) == project.resolve()
