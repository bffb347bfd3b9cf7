#!/usr/bin/env bash
# Wall time of the full pipeline (prepare -> train all candidates -> evaluate -> register) on a
# fresh clone, after dependencies are installed: `git clone`, `dvc pull`, `dvc repro`, with a
# new embedded MLflow store. Usage: bash bench/pipeline.sh [RUNS]   (default 3)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-3}"
source "$repo/.venv/bin/activate"

for i in $(seq 1 "$runs"); do
  work="$(mktemp -d)"
  git clone --quiet "$repo" "$work/clone"
  cd "$work/clone"
  start=$(date +%s.%N)
  dvc pull --quiet --allow-missing
  pulled=$(date +%s.%N)
  TRAINING_STATE_DIR="$work/state" dvc repro --quiet >/dev/null 2>"$work/repro.log"
  done_=$(date +%s.%N)
  python - "$start" "$pulled" "$done_" "$i" <<'PY'
import sys
start, pulled, done = map(float, sys.argv[1:4])
i = sys.argv[4]
print(f"run {i}: dvc pull {pulled - start:5.1f} s   dvc repro {done - pulled:5.1f} s   total {done - start:5.1f} s")
PY
  cd "$repo"
  rm -rf "$work"
done
