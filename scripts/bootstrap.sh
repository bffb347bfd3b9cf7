#!/usr/bin/env bash
# Install the project into .venv from the lock file (idempotent; a no-op when up to date).
# Needs only Python 3.11 and pip: uv itself is installed from PyPI if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  python3 -m pip install --quiet "uv==$UV_VERSION"
fi
# --frozen: install exactly uv.lock, never re-resolve. All extras: train, serve, dev.
uv sync --frozen --all-extras --quiet
# DVC keeps per-repository state (diskcache pickles) in /var/tmp/dvc, shared by every user of
# the machine: this checkout keeps its own, private (docs/security.md, PYSEC-2026-2447), as a
# Job's workspace does (training_job/workspace.py).
mkdir -p -m 700 .dvc/site-cache
.venv/bin/dvc config --local core.site_cache_dir "$PWD/.dvc/site-cache"
