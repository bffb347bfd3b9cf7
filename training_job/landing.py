"""New data landing: import new files from the landing location into the DVC-tracked data.

The landing location is a local folder by default and any URL DVC reads by configuration
(s3://bucket/prefix with the dvc-s3 plugin, a PVC path in a cluster). Each new file becomes
`data/raw/batches/<name>` through `dvc import-url`, so DVC hashes it and records where it
came from; the data digest of `data/raw` then changes and the decision sees new data.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from training_job.datafile import DATA_SUFFIXES

log = logging.getLogger(__name__)

BATCHES = Path("data/raw/batches")


class LandingError(RuntimeError):
    """The landing location could not be listed or a file could not be imported."""


def _dvc(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise LandingError(f"dvc {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _join(url: str, name: str) -> str:
    return f"{url.rstrip('/')}/{name}"


def list_landing(url: str, cwd: Path) -> list[str]:
    """Names of the data files in the landing location (not recursive)."""
    if "://" not in url:
        # A local folder is listed directly: `dvc ls-url` would cost a process start (seconds,
        # on the path from "data landed" to "new champion serving").
        folder = Path(url)
        names = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    else:
        # One entry per line; folders end with "/".
        names = [line.strip() for line in _dvc("ls-url", url, cwd=cwd).splitlines()]
        names = [n for n in names if n and not n.endswith("/")]
    return sorted(n for n in names if Path(n).suffix in DATA_SUFFIXES)


def import_new(url: str, workspace: Path) -> list[str]:
    """`dvc import-url` every landed file that is not imported yet; return their names."""
    source = url if "://" in url else str(Path(url).resolve())
    batches = workspace / BATCHES
    imported = {p.name.removesuffix(".dvc") for p in batches.glob("*.dvc")}
    new = [name for name in list_landing(source, workspace) if name not in imported]
    if not new:
        return new
    # DVC's own `import-url`, run in this process (a `dvc` process per file cost seconds).
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    batches.mkdir(parents=True, exist_ok=True)
    # DVC's logger writes INFO to stdout through handlers it installs when imported
    # ("Importing ... -> ..."); the retrain command's stdout is its JSON result.
    dvc_log = logging.getLogger("dvc")
    level = dvc_log.level
    dvc_log.setLevel(logging.WARNING)
    try:
        with Repo(str(workspace)) as repo:
            for name in new:
                log.info("importing landed file %s", name)
                try:
                    repo.imp_url(_join(source, name), out=str(batches / name))
                except DvcException as exc:
                    raise LandingError(f"dvc import-url {name} failed: {exc}") from exc
    finally:
        dvc_log.setLevel(level)
    return new
