#!/usr/bin/env bash
# Install Debian packages unattended without starting their services (the project starts
# what it needs itself: there is no init system on the machines it is developed on), as root
# or with passwordless sudo. One apt-get at a time on the machine (dpkg allows only one).
#
#   bash scripts/apt-install.sh PACKAGE...
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: apt-install.sh PACKAGE..." >&2; exit 2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "apt-install.sh: not root and no passwordless sudo: install Debian's $* yourself" >&2
    exit 1
  fi
fi
command -v apt-get >/dev/null || { echo "apt-install.sh: no apt-get: install $* yourself" >&2; exit 1; }

exec 8>/tmp/.housing-apt.lock
flock 8
export DEBIAN_FRONTEND=noninteractive
# A policy-rc.d that says no keeps each package's postinst from starting its service.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod +x "$POLICY"
  ADDED_POLICY=1
fi
trap '[ "$ADDED_POLICY" = 1 ] && "${SUDO[@]}" rm -f "$POLICY"' EXIT
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
