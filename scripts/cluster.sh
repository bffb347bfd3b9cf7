#!/usr/bin/env bash
# The single-node Kubernetes cluster built on this machine (cluster/, docs/kubernetes.md), as
# root:
#   bash scripts/cluster.sh up        # build (first time: minutes; cached) and start; prints the
#                                     # admin kubeconfig: export KUBECONFIG=<it>
#   bash scripts/cluster.sh status    # components, node, system Pods
#   bash scripts/cluster.sh down      # stop everything, Pods included; remove its state
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/tools.sh
exec .venv/bin/python -m cluster "$@"
