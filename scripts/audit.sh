#!/usr/bin/env bash
# Audit exactly the lock file's packages (every extra: train, serve, dev) for known
# vulnerabilities with a pinned pip-audit. Needs the network (PyPI's JSON API, or OSV with
# AUDIT_SERVICE=osv); not part of the pytest suite. Findings and decisions: docs/security.md.
#
#   bash scripts/audit.sh              # exit 0: nothing found that is not accepted below
#   AUDIT_SERVICE=osv bash scripts/audit.sh
#
# --strict: a package whose advisories cannot be fetched fails the audit. Without it pip-audit
# skips it and still says "No known vulnerabilities found" (what happens on a machine that
# reaches PyPI's simple index but not its per-release JSON API).
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_AUDIT_VERSION=2.10.1
SERVICE=${AUDIT_SERVICE:-pypi}
# Accepted findings: one ID a line, each explained in docs/security.md#dependency-audit.
IGNORED=(
  # diskcache 5.6.3 (train extra only, via dvc-data): pickled cache in DVC's site cache dir,
  # no fixed release. Not exploitable as deployed: the pod's, the scripts' and the workspaces'
  # site cache is private to the job's user.
  PYSEC-2026-2447 GHSA-w8v5-vhqr-4h9v
)

# uv itself, at the version bootstrap.sh pins (the project need not be installed).
UV_VERSION=$(sed -n 's/^UV_VERSION=//p' scripts/bootstrap.sh)
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  python3 -m pip install --quiet "uv==$UV_VERSION"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The lock file as pinned requirements: no re-resolution (--frozen), not the project itself.
uv export --frozen --all-extras --no-hashes --no-emit-project --format requirements.txt \
  --quiet -o "$work/requirements.txt"
echo "audit.sh: $(grep -c '^[A-Za-z0-9]' "$work/requirements.txt") locked packages, service $SERVICE" >&2

args=()
for id in "${IGNORED[@]}"; do
  args+=(--ignore-vuln "$id")
done
# --no-deps --disable-pip: audit the pins as they are, without installing or resolving.
uvx --quiet "pip-audit==$PIP_AUDIT_VERSION" \
  --requirement "$work/requirements.txt" --no-deps --disable-pip --strict \
  --vulnerability-service "$SERVICE" --desc on --aliases on --progress-spinner off \
  "${args[@]}"
