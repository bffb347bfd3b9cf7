#!/usr/bin/env bash
# The whole test suite: lint, format, types, then pytest (unit, pipeline, servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
source .venv/bin/activate
# DVC keeps per-repository state (diskcache pickles) in /var/tmp/dvc, shared by every user of
# the machine: keep it in the checkout, private (docs/security.md, PYSEC-2026-2447).
export DVC_SITE_CACHE_DIR="${DVC_SITE_CACHE_DIR:-$PWD/.dvc/site-cache}"
mkdir -p -m 700 "$DVC_SITE_CACHE_DIR"
# The tests read the real data: fetch it from the in-repo DVC remote (no network).
dvc pull --quiet data/raw/cal_housing.data.dvc

ruff check .
ruff format --check .
mypy
pytest "$@"
