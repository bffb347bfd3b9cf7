#!/usr/bin/env bash
# Install the project into .venv from the lock file (idempotent; a no-op when up to date).
# Needs only Python 3.11: uv comes from PyPI into a private virtual environment under the
# user's cache (never into the system Python: PEP 668 systems refuse that, and it needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
UV_HOME="${XDG_CACHE_HOME:-$HOME/.cache}/california-housing/uv-$UV_VERSION"

if command -v uv >/dev/null 2>&1 && [ "$(uv --version | awk '{print $2}')" = "$UV_VERSION" ]; then
  UV=uv
else
  UV="$UV_HOME/bin/uv"
  if [ ! -x "$UV" ]; then
    echo "bootstrap: installing uv $UV_VERSION into $UV_HOME"
    if python3 -m venv --clear "$UV_HOME" 2>/dev/null; then
      "$UV_HOME/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
    else
      # No venv module (Debian without python3-venv): pip into the private folder alone;
      # --target installs outside any environment, so PEP 668's marker does not apply.
      rm -rf "$UV_HOME"
      python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target "$UV_HOME/lib" "uv==$UV_VERSION"
      mkdir -p "$UV_HOME/bin"
      ln -s ../lib/bin/uv "$UV"
    fi
  fi
fi
# --frozen: install exactly uv.lock, never re-resolve. All extras: train, serve, dev.
"$UV" sync --frozen --all-extras --quiet
# DVC keeps per-repository state (diskcache pickles) in /var/tmp/dvc, shared by every user of
# the machine: this checkout keeps its own, private (docs/security.md, PYSEC-2026-2447), as a
# Job's workspace does (training_job/workspace.py).
mkdir -p -m 700 .dvc/site-cache
.venv/bin/dvc config --local core.site_cache_dir "$PWD/.dvc/site-cache"
