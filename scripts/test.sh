#!/usr/bin/env bash
# The whole test suite: lint, format, types, then pytest (unit, pipeline, servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The production-path tests' database: PostgreSQL on 127.0.0.1:5432 (installed and started if
# missing; before tools.sh, which uses apt-get too).
bash scripts/postgres.sh
source .venv/bin/activate
# The tests read the real data and the gate's frozen reference set: fetch them from the in-repo
# DVC remote (no network).
dvc pull --quiet data/raw/cal_housing.data.dvc data/reference/reference.data.dvc

# The chart and observability tests' tools (Helm, validators, checkov; Prometheus), installed
# while the linters run; the tests' fixtures then find them in place (both scripts lock).
mkdir -p .tools
(bash scripts/tools.sh && bash scripts/prometheus.sh) >.tools/install.log 2>&1 &
tools=$!

ruff check .
ruff format --check .
mypy
if ! wait "$tools"; then
  cat .tools/install.log >&2
  exit 1
fi
# Two workers (one a core), a test file each at a time: a file's tests share its servers.
pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
