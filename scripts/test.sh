#!/usr/bin/env bash
# The whole test suite: lint, format, types, then pytest (unit, pipeline, servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
source .venv/bin/activate
# The tests read the real data: fetch it from the in-repo DVC remote (no network).
dvc pull --quiet data/raw/cal_housing.data.dvc

ruff check .
ruff format --check .
mypy
pytest "$@"
