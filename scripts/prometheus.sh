#!/usr/bin/env bash
# Install Prometheus and promtool from Debian's `prometheus` package (idempotent: a no-op when
# both are on PATH). The observability tests call this; CI runs it as root on Debian.
#
#   bash scripts/prometheus.sh      # then: prometheus --version; promtool --version
#
# The package's service is not started (there is no init system in CI containers, and the tests
# start their own Prometheus on 127.0.0.1 with a temporary TSDB).
set -euo pipefail

log() { echo "prometheus.sh: $*" >&2; }

# One install at a time (parallel test workers): the others wait, then find it installed.
LOCKS="$(dirname "$0")/../.tools"
mkdir -p "$LOCKS"
exec 9>"$LOCKS/.prometheus.lock"
flock 9
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi

log "installing Debian's prometheus package"
bash "$(dirname "$0")/apt-install.sh" prometheus
command -v prometheus >/dev/null && command -v promtool >/dev/null
log "installed: $(prometheus --version 2>&1 | head -n 1)"
