"""Compile the cluster's components from their Go modules, once per version.

The binaries land in ``~/.cache/housing-cluster/bin/<module>-<version>-<digest>/``: the
digest covers the module's go.mod, go.sum and sources and the Go version, so an edit or a
new pin builds anew while a second ``up`` (or a fresh clone on the same machine) finds them.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from cluster.config import Component, cache_dir, components

log = logging.getLogger(__name__)


def go() -> str:
    """The Go toolchain (1.24 or later; on PATH, or where Go's installer puts it)."""
    found = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if Path(p).exists()), None
    )
    if found is None:
        raise RuntimeError("no Go toolchain: install Go 1.24 or later")
    return found


def go_version() -> str:
    return subprocess.run(
        [go(), "env", "GOVERSION"], check=True, capture_output=True, text=True
    ).stdout.strip()


def build_key(component: Component, go: str) -> str:
    digest = hashlib.sha256(go.encode())
    for path in sorted(component.folder.iterdir()):
        if path.suffix in {".go", ".mod", ".sum"}:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(" ".join(component.ldflags).encode())
    return f"{component.module}-{component.version}-{digest.hexdigest()[:12]}"


def binary_dir(component: Component, go: str) -> Path:
    return cache_dir() / "bin" / build_key(component, go)


def build(component: Component, go: str) -> Path:
    """The folder of the component's binaries, built if not cached yet."""
    out = binary_dir(component, go)
    if (out / ".complete").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time per machine (two test workers, or a user beside the tests).
    with (out.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / ".complete").exists():
            return out
        return _build(component, out)


def _build(component: Component, out: Path) -> Path:
    log.info("building %s %s (first time on this machine)", component.module, component.version)
    started = time.monotonic()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    env = {**os.environ, "CGO_ENABLED": "0"}
    ldflags = " ".join(("-s", "-w", *component.ldflags))
    for name, package in component.binaries:
        subprocess.run(
            [go(), "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial / name), package],
            cwd=component.folder,
            env=env,
            check=True,
        )
    (partial / ".complete").write_text(f"{time.monotonic() - started:.0f} s\n")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    log.info("built %s in %.0f s", component.module, time.monotonic() - started)
    return out


def binaries() -> dict[str, Path]:
    """The path of each binary the cluster runs, built first where needed."""
    go = go_version()
    return {
        name: build(component, go) / name
        for component in components()
        for name, _ in component.binaries
    }


def binaries_if_built() -> dict[str, Path]:
    """The binaries already in the cache (for `down`, which must not start a build)."""
    go = go_version()
    found = {}
    for component in components():
        folder = binary_dir(component, go)
        if (folder / ".complete").exists():
            found.update({name: folder / name for name, _ in component.binaries})
    return found
