#!/usr/bin/env bash
# Bring the whole system up on kind and prove it end to end:
#   kind cluster (k8s/kind-config.yaml) -> cert-manager -> KServe (Standard mode, no ingress)
#   -> Prometheus operator CRDs -> build and load the two images -> install the chart
#   -> wait for the initial training Job and the InferenceService -> `helm test`
#   -> a retraining Job created from the CronJob, waited to completion.
#
#   bash k8s/kind-up.sh                 # everything
#   SKIP_BUILD=1 bash k8s/kind-up.sh    # images already built (california-housing/*:TAG)
#   bash k8s/kind-up.sh down            # delete the cluster
#
# Needs docker, kind, kubectl and helm (Helm 3 or 4) on PATH, and network access to the
# projects' release downloads and registries: for a machine with a cluster (CI's e2e
# workflow, a laptop), not for the build machines of this project.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-california-housing}
NAMESPACE=${NAMESPACE:-california-housing}
RELEASE=${RELEASE:-ch}
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.18.2}
# 0.16 or later: the chart's default deployment mode, Standard, is unknown to 0.15 (which
# calls it RawDeployment: install 0.15 with kserve.deploymentMode=RawDeployment). The CRDs
# the tests install into the local cluster are 0.20.0's (../shared/k8s-crds).
KSERVE_VERSION=${KSERVE_VERSION:-v0.20.0}
PROMETHEUS_OPERATOR_VERSION=${PROMETHEUS_OPERATOR_VERSION:-v0.83.0}
TAG=${TAG:-$(awk '/^appVersion:/{gsub(/"/, "", $2); print $2}' charts/california-housing/Chart.yaml)}
CONTEXT=kind-$CLUSTER
log() { echo "kind-up.sh: $*" >&2; }
kc() { kubectl --context "$CONTEXT" "$@"; }

if [ "${1:-}" = down ]; then
  kind delete cluster --name "$CLUSTER"
  exit 0
fi

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { log "$tool is required on PATH"; exit 1; }
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config k8s/kind-config.yaml --wait 5m
fi

log "installing cert-manager $CERT_MANAGER_VERSION"
kc apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
kc -n cert-manager rollout status deployment/cert-manager-webhook --timeout=5m

log "installing KServe $KSERVE_VERSION (Standard mode, no ingress)"
helm --kube-context "$CONTEXT" upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
  --version "$KSERVE_VERSION" --namespace kserve --create-namespace --wait
helm --kube-context "$CONTEXT" upgrade --install kserve oci://ghcr.io/kserve/charts/kserve \
  --version "$KSERVE_VERSION" --namespace kserve \
  --set kserve.controller.deploymentMode=Standard \
  --set kserve.controller.gateway.disableIngressCreation=true \
  --wait --timeout 10m

log "installing the Prometheus operator CRDs $PROMETHEUS_OPERATOR_VERSION"
kc apply --server-side -f \
  "https://github.com/prometheus-operator/prometheus-operator/releases/download/$PROMETHEUS_OPERATOR_VERSION/stripped-down-crds.yaml"
kc wait --for=condition=Established --timeout=2m \
  crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com

if [ -z "${SKIP_BUILD:-}" ]; then
  log "building the images (tag $TAG)"
  commit=$(git rev-parse --verify -q HEAD || echo unknown)
  docker build -f docker/model-server.Dockerfile --build-arg GIT_COMMIT="$commit" \
    -t "california-housing/model-server:$TAG" .
  docker build -f docker/training-job.Dockerfile --build-arg GIT_COMMIT="$commit" \
    -t "california-housing/training-job:$TAG" .
fi
log "loading the images into the nodes"
kind load docker-image --name "$CLUSTER" \
  "california-housing/model-server:$TAG" "california-housing/training-job:$TAG"

log "installing the chart as $RELEASE in $NAMESPACE"
helm --kube-context "$CONTEXT" upgrade --install "$RELEASE" charts/california-housing \
  --namespace "$NAMESPACE" --create-namespace -f k8s/kind-values.yaml \
  --set images.modelServer.tag="$TAG" --set images.training.tag="$TAG" \
  --wait --timeout 15m

fullname="$RELEASE-california-housing"
revision=$(helm --kube-context "$CONTEXT" -n "$NAMESPACE" status "$RELEASE" -o json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
log "waiting for the initial training Job"
if ! kc -n "$NAMESPACE" wait --for=condition=complete --timeout=30m "job/$fullname-training-$revision"; then
  kc -n "$NAMESPACE" logs "job/$fullname-training-$revision" --tail=200 || true
  exit 1
fi
log "waiting for the InferenceService"
kc -n "$NAMESPACE" wait --for=condition=Ready --timeout=15m "inferenceservice/$fullname"

log "helm test (a real v1 prediction)"
helm --kube-context "$CONTEXT" -n "$NAMESPACE" test "$RELEASE" --logs --timeout 10m

log "a retraining run, created from the CronJob"
job="$fullname-retrain-e2e-$(date +%s)"
kc -n "$NAMESPACE" create job --from="cronjob/$fullname-retrain" "$job"
if ! kc -n "$NAMESPACE" wait --for=condition=complete --timeout=30m "job/$job"; then
  kc -n "$NAMESPACE" logs "job/$job" --tail=200 || true
  exit 1
fi
kc -n "$NAMESPACE" logs "job/$job" --tail=50
log "all green: the system trains, serves, answers and retrains on $CONTEXT"
