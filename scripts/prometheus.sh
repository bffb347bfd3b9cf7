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

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    log "prometheus/promtool missing and not root (no sudo): install Debian's 'prometheus' package"
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "prometheus/promtool missing and no apt-get: install Prometheus 2.42+ and promtool on PATH"
  exit 1
fi

log "installing Debian's prometheus package"
export DEBIAN_FRONTEND=noninteractive
# Keep the package's postinst from starting the service (no-op where no init system runs).
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod +x "$POLICY"
  ADDED_POLICY=1
fi
cleanup() { if [ "$ADDED_POLICY" = 1 ]; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v prometheus >/dev/null && command -v promtool >/dev/null
log "installed: $(prometheus --version 2>&1 | head -n 1)"
