#!/usr/bin/env bash
# Build both images on a machine without a container registry (as root):
#   1. start Debian's Docker engine off every network of its own (no bridge, no iptables);
#   2. make the base image locally once (debootstrap: Debian bookworm + python3 + venv),
#      since no image can be pulled;
#   3. build docker/model-server.Dockerfile and docker/training-job.Dockerfile from a staged
#      context (only the files the images need) with the classic builder and host networking.
#
#   bash docker/build-local.sh               # build, print image sizes, stop dockerd
#   KEEP_DOCKERD=1 bash docker/build-local.sh   # leave dockerd running (its PID in .tools/)
#   SAVE_DIR=DIR bash docker/build-local.sh  # also `docker save` each image to DIR/NAME.tar,
#                                            # its ID in DIR/NAME.id (for the local cluster)
#
# Three images: the model server, the training job (also MLflow's server), and PostgreSQL
# for the chart's bundled database (docker/postgresql.Dockerfile: no image can be pulled).
#
# Elsewhere build with the public base: docker build -f docker/model-server.Dockerfile .
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BASE_IMAGE=${BASE_IMAGE:-local/python:3.11-bookworm}
TAG=${TAG:-$(awk '/^appVersion:/{gsub(/"/, "", $2); print $2}' charts/california-housing/Chart.yaml)}
GIT_COMMIT=${GIT_COMMIT:-$(git rev-parse --verify -q HEAD || echo unknown)}
STATE=$ROOT/.tools/docker
mkdir -p "$STATE"
log() { echo "build-local.sh: $*" >&2; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  bash scripts/apt-install.sh "${need[@]}"
fi

started_dockerd=""
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (no bridge, no iptables)"
  dockerd --bridge=none --iptables=false --ip6tables=false >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$STATE/dockerd.pid"
  started_dockerd=$(cat "$STATE/dockerd.pid")
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null
fi
stop_dockerd() {
  if [ -n "$started_dockerd" ] && [ -z "${KEEP_DOCKERD:-}" ]; then
    log "stopping dockerd ($started_dockerd)"
    kill "$started_dockerd" && wait "$started_dockerd" 2>/dev/null || true
    rm -f "$STATE/dockerd.pid"
  fi
}
CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"; stop_dockerd' EXIT

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  [ "$BASE_IMAGE" = local/python:3.11-bookworm ] || { log "base image $BASE_IMAGE not found"; exit 1; }
  log "making $BASE_IMAGE with debootstrap (once)"
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  ROOTFS=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >"$STATE/debootstrap.log" 2>&1
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  tar -C "$ROOTFS" -c . | docker import -c 'CMD ["python3"]' - "$BASE_IMAGE"
  rm -rf "$ROOTFS"
fi

# The staged context: exactly the files the Dockerfiles copy (docker/context.py reads their COPY
# lines), and the Dockerfiles; no .venv, state, .git.
log "staging the build context"
CONTEXT_LIST=$(cd "$ROOT" && python3 docker/context.py docker/*.Dockerfile)
mapfile -t CONTEXT_FILES <<<"$CONTEXT_LIST"
tar -C "$ROOT" --exclude=__pycache__ -cf - "${CONTEXT_FILES[@]}" docker | tar -C "$CONTEXT" -xf -
find "$CONTEXT/docker/certs" -name '*.crt' -delete
# This machine reaches the package index through a proxy with its own CA: trust it in the build.
cp /usr/local/share/ca-certificates/*.crt "$CONTEXT/docker/certs/" 2>/dev/null || true

build() {
  local name=$1 dockerfile=$2 tag=$3
  log "building california-housing/$name:$tag"
  DOCKER_BUILDKIT=0 docker build --network host --quiet \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg GIT_COMMIT="$GIT_COMMIT" \
    -f "$CONTEXT/docker/$dockerfile" -t "california-housing/$name:$tag" "$CONTEXT" >/dev/null
  if [ -n "${SAVE_DIR:-}" ]; then
    # Saved again only when the image changed (NAME.id holds the saved image's ID).
    local id
    id=$(docker image inspect -f '{{.Id}}' "california-housing/$name:$tag")
    mkdir -p "$SAVE_DIR"
    if [ "$(cat "$SAVE_DIR/$name.id" 2>/dev/null)" != "$id" ]; then
      docker save -o "$SAVE_DIR/$name.tar" "california-housing/$name:$tag"
      echo "$id" >"$SAVE_DIR/$name.id"
    fi
  fi
}
build model-server model-server.Dockerfile "$TAG"
build training-job training-job.Dockerfile "$TAG"
build postgresql postgresql.Dockerfile 15
# A rebuild leaves the previous images of the same tags dangling (~1.4 GB a build): remove
# this project's (their final stage carries the OCI title label), or a machine that rebuilds
# often fills its disk and the node's kubelet, under disk pressure, deletes the cluster's
# own images (seen 2026-12-04: 45 GB of them, the pause image evicted, every pod stuck).
docker image prune --force --filter label=org.opencontainers.image.title >/dev/null \
  || log "could not remove the previous builds' dangling images"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "california-housing|$BASE_IMAGE"
