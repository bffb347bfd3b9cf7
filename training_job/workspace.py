"""The DVC workspace a Job works in.

In a container the project (code, dvc.yaml, params.yaml, .dvc/, data/raw/*.dvc) sits in the
image on a read-only root filesystem, while DVC and the pipeline must write. A Job therefore
points TRAINING_WORKSPACE at a writable volume; on first use the project's pipeline files are
copied there, the DVC remote is set from TRAINING_DVC_REMOTE if given, and the raw data is
pulled. Locally the workspace is the repository itself and nothing is copied.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# What a workspace needs from the project; everything else (code, tests, charts) is not
# read from the workspace.
_PROJECT_FILES = ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore")
_PROJECT_DIRS = (".dvc", "data/raw", "data/reference", "dvc-remote")
_NOT_COPIED = shutil.ignore_patterns(
    "tmp", "cache", "site-cache", "config.local", "*.data", "*.csv"
)


class WorkspaceError(RuntimeError):
    """The workspace could not be prepared (copy, remote, pull)."""


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise WorkspaceError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-2000:]}")


def materialize(workspace: Path, project: Path, remote: str | None) -> Path:
    """Make `workspace` a DVC workspace of `project` with the raw data pulled; return it."""
    workspace, project = workspace.resolve(), project.resolve()
    if workspace == project:
        return workspace
    if not (workspace / "dvc.yaml").exists():
        log.info("materialising the DVC workspace in %s from %s", workspace, project)
        workspace.mkdir(parents=True, exist_ok=True)
        for name in _PROJECT_FILES:
            if (project / name).exists():
                shutil.copy2(project / name, workspace / name)
        for name in _PROJECT_DIRS:
            if (project / name).is_dir():
                shutil.copytree(project / name, workspace / name, ignore=_NOT_COPIED)
        # DVC wants an SCM for import-url bookkeeping; a throwaway repository is enough.
        _run(["git", "init", "-q"], workspace)
        # DVC keeps per-repository state in /var/tmp/dvc by default, which is read-only in the
        # pod and shared by every user elsewhere: keep it in the workspace instead, private
        # (DVC would create it world-writable; docs/security.md), before any dvc command runs.
        site_cache = workspace / ".dvc" / "site-cache"
        site_cache.mkdir(mode=0o700, exist_ok=True)
        with (workspace / ".dvc" / "config.local").open("a", encoding="utf-8") as config:
            config.write(f"[core]\n    site_cache_dir = {site_cache}\n")
    if remote:
        dvc = [sys.executable, "-m", "dvc"]
        _run(
            [*dvc, "remote", "add", "--local", "--force", "--default", "deployed", remote],
            workspace,
        )
    pulled = [d for d in ("data/raw", "data/reference") if (workspace / d).is_dir()]
    _run([sys.executable, "-m", "dvc", "pull", "--quiet", "--recursive", *pulled], workspace)
    return workspace
