#!/usr/bin/env bash
# The whole test suite: lint, format, types, then pytest (unit, pipeline, servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
source .venv/bin/activate

ruff check .
ruff format --check .
mypy
pytest "$@"
