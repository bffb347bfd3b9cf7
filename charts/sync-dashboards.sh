#!/usr/bin/env bash
# Copy the Grafana dashboards (dashboards/*.json, the single source of truth) into the chart
# (charts/california-housing/dashboards/), because Helm cannot read files outside the chart.
# --check: change nothing, exit 1 when the two folders differ (tests/chart runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=dashboards
DST=charts/california-housing/dashboards
mode=${1:-sync}

list() { [ -d "$1" ] && find "$1" -maxdepth 1 -name '*.json' -printf '%f\n' | sort || true; }

if [ "$mode" = "--check" ]; then
  if [ "$(list "$SRC")" != "$(list "$DST")" ]; then
    echo "dashboards differ: run charts/sync-dashboards.sh" >&2
    exit 1
  fi
  for f in $(list "$SRC"); do
    cmp -s "$SRC/$f" "$DST/$f" || { echo "$DST/$f is stale: run charts/sync-dashboards.sh" >&2; exit 1; }
  done
  exit 0
fi

mkdir -p "$DST"
find "$DST" -maxdepth 1 -name '*.json' -delete
for f in $(list "$SRC"); do
  cp "$SRC/$f" "$DST/$f"
done
echo "synced $(list "$DST" | wc -l) dashboard(s) into $DST"
