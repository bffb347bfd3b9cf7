#!/usr/bin/env bash
# Install, start and open Debian's PostgreSQL for the production-path tests (idempotent; as
# root, or with passwordless sudo). What the tests expect (tests/servers.py PG_DSN): a server
# on 127.0.0.1:5432 where the role `root` is a superuser, and every role (the chart tests'
# `postgres` too) is trusted from loopback: a test machine's database, not a production one.
#
#   bash scripts/postgres.sh      # then: psql -h 127.0.0.1 -U root postgres
#
# Machines of kind `polyglot` have the psql client but no server: this installs Debian's
# `postgresql` package (15 on bookworm), creates the cluster if the package did not, starts it
# without systemd (none runs here) and adds the trust lines ahead of the package's own.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    log "not root and no passwordless sudo: install Debian's 'postgresql' and give role root trust on 127.0.0.1:5432"
    exit 1
  fi
fi

# as_postgres CMD...: run a command as the cluster's owner.
as_postgres() {
  if [ ${#SUDO[@]} -eq 0 ]; then runuser -u postgres -- "$@"; else "${SUDO[@]}" -u postgres "$@"; fi
}

# One run at a time: the lock lives outside the checkout, since the server is the machine's.
exec 9>/tmp/.housing-postgres.lock
flock 9

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null; then
  log "installing Debian's postgresql package"
  # apt-get install --no-install-recommends postgresql, with no service started by the package
  bash "$(dirname "$0")/apt-install.sh" postgresql
fi

VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
CLUSTER=main
CONF=/etc/postgresql/$VERSION/$CLUSTER
if [ ! -f "$CONF/postgresql.conf" ]; then
  log "creating cluster $VERSION/$CLUSTER"
  "${SUDO[@]}" pg_createcluster "$VERSION" "$CLUSTER" >/dev/null
fi

# Trust loopback only, ahead of the package's password rules.
HBA=$CONF/pg_hba.conf
MARK="# housing tests: every role trusted from loopback"
if ! "${SUDO[@]}" grep -qF "$MARK" "$HBA"; then
  log "trusting loopback (127.0.0.1, ::1) in $HBA"
  tmp=$(mktemp)
  {
    echo "$MARK"
    echo "host    all    all    127.0.0.1/32    trust"
    echo "host    all    all    ::1/128         trust"
    "${SUDO[@]}" cat "$HBA"
  } >"$tmp"
  "${SUDO[@]}" install -m 640 -o postgres -g postgres "$tmp" "$HBA"
  rm -f "$tmp"
  if pg_isready -h 127.0.0.1 -p 5432 -q; then
    "${SUDO[@]}" pg_ctlcluster "$VERSION" "$CLUSTER" reload
  fi
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  log "starting PostgreSQL $VERSION/$CLUSTER"
  # 9>&-: the server must not inherit (and hold) the lock.
  "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" start 9>&-
  for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432 -q || { log "PostgreSQL did not accept connections on 127.0.0.1:5432"; exit 1; }
fi

# The role the tests connect as (the package creates only `postgres`).
if ! as_postgres psql -XtAq -c "SELECT 1 FROM pg_roles WHERE rolname = 'root'" 2>/dev/null | grep -q 1; then
  log "creating role root (superuser)"
  as_postgres psql -Xq -c "CREATE ROLE root SUPERUSER LOGIN"
fi
psql -XtAq "postgresql://root@127.0.0.1:5432/postgres" -c "SELECT 1" >/dev/null
log "ready: postgresql://root@127.0.0.1:5432 (PostgreSQL $VERSION)"
