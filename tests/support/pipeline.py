"""The training side as tests drive it: the repository's paths, a training job's environment,
`python -m training_job`, the whole pipeline, a scratch copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAW_DATA = REPO / "data" / "raw" / "cal_housing.data"


@dataclass(frozen=True)
class TrainedRegistry:
    """A workspace where the pipeline ran, and the MLflow store it registered into."""

    workspace: Path
    state_dir: Path
    tracking_uri: str

    def env(self) -> dict[str, str]:
        return pipeline_env(self.state_dir, self.tracking_uri)


_EMPTY_MLFLOW_DB: list[Path] = []


def _seed_embedded_store(state_dir: Path) -> None:
    """Start a new embedded MLflow store from an empty one made once per test session.

    Creating MLflow's schema runs some fifty migrations (5 s or more here); every test that
    needs a fresh store would pay it. The copy is exactly what MLflow would have created.
    """
    target = state_dir / "mlflow.db"
    if target.exists():
        return
    if not _EMPTY_MLFLOW_DB:
        import tempfile

        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        folder = Path(tempfile.mkdtemp(prefix="mlflow-empty-"))
        SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts"))
        _EMPTY_MLFLOW_DB.append(folder / "mlflow.db")
    state_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(_EMPTY_MLFLOW_DB[0], target)


def pipeline_env(state_dir: Path, tracking_uri: str | None = None) -> dict[str, str]:
    """The environment of a training job using `state_dir` (and its embedded MLflow store
    unless `tracking_uri` names another)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINING_"))}
    env["TRAINING_STATE_DIR"] = str(state_dir)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    else:
        _seed_embedded_store(state_dir)
    return env


def run_training_job(
    *args: str, env: dict[str, str], cwd: Path = REPO, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m training_job ARGS` as a user runs it; output captured for assertions."""
    result = subprocess.run(
        [sys.executable, "-m", "training_job", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"training_job {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
        )
    return result


def run_pipeline(
    workspace: Path,
    state_dir: Path,
    tracking_uri: str | None = None,
    *,
    raw: Path = RAW_DATA,
    params: Path = REPO / "params.yaml",
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    return run_training_job(
        "pipeline",
        "--raw",
        str(raw),
        "--params",
        str(params),
        "--workspace",
        str(workspace),
        env=pipeline_env(state_dir, tracking_uri),
        check=check,
    )


def copy_workspace(target: Path) -> Path:
    """The files a clone would have (tracked and new, not ignored; DVC data not pulled), as a new
    git + DVC repository: a workspace tests may change (land data, import, retrain)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=target, check=True)
    return target
