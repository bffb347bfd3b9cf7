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
    if "://" not in url and not Path(url).exists():
        return []  # nothing has landed yet
    # One entry per line; folders end with "/".
    names = [line.strip() for line in _dvc("ls-url", url, cwd=cwd).splitlines()]
    return sorted(n for n in names if n and not n.endswith("/") and Path(n).suffix in DATA_SUFFIXES)


def import_new(url: str, workspace: Path) -> list[str]:
    """`dvc import-url` every landed file that is not imported yet; return their names."""
    source = url if "://" in url else str(Path(url).resolve())
    batches = workspace / BATCHES
    imported = {p.name.removesuffix(".dvc") for p in batches.glob("*.dvc")}
    new = [name for name in list_landing(source, workspace) if name not in imported]
    for name in new:
        log.info("importing landed file %s", name)
        batches.mkdir(parents=True, exist_ok=True)
        _dvc("import-url", _join(source, name), (BATCHES / name).as_posix(), cwd=workspace)
    return new
