#!/usr/bin/env bash
# Write each chart's README.md from its values.yaml comments and README.md.gotmpl, with
# helm-docs (built by scripts/tools.sh from charts/tools/go.mod). tests/chart fails when a
# committed README is stale.
#
#   bash scripts/chart-docs.sh            # the charts under charts/
#   bash scripts/chart-docs.sh DIR        # the charts under DIR (the test's copy)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/tools.sh
exec .tools/bin/helm-docs --chart-search-root "${1:-charts}" --sort-values-order file \
  --skip-version-footer --log-level warning
