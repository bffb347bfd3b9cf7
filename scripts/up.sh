#!/usr/bin/env bash
# Run the system on its embedded default: install, pull the data from the in-repo DVC remote,
# run the DVC pipeline (prepare, train, evaluate, register a gated @champion) with MLflow on
# SQLite under ./state, then serve the champion on http://127.0.0.1:8080 (Ctrl-C stops it).
# The terminal gets the steps as they happen and, once the model answers, one summary; the
# pipeline's and the server's own output go to state/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

HOST="${MODEL_SERVER_HOST:-127.0.0.1}"
PORT="${MODEL_SERVER_HTTP_PORT:-8080}"
LOGS=state/logs
PIPELINE_LOG="$LOGS/pipeline.log"
SERVER_LOG="$LOGS/model-server.log"

step() { printf '==> %s\n' "$*"; }
failed() { # what failed, its log
  printf 'up.sh: %s failed; the end of %s:\n' "$1" "$2" >&2
  tail -n 25 "$2" >&2
  exit 1
}

step "Installing the locked dependencies into .venv"
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate
mkdir -p "$LOGS"

step "Pulling the raw data from the in-repo DVC remote"
dvc pull --quiet --allow-missing

# The MLflow store (state/) is not versioned, while the pipeline's metrics and plots are: in a
# fresh clone, or after state/ was wiped, DVC would find evaluate and register up to date and
# skip the very steps that log to MLflow and register the champion. Then run every stage.
force=()
if ! training-job status --require-champion >/dev/null 2>&1; then
  force=(--force)
fi
: >"$PIPELINE_LOG"
# Every stage but tune: the hyperparameter search (minutes) is run on purpose (`dvc repro
# tune`); its result, models/tuned.json, is versioned and every training reads it.
mapfile -t stages < <(dvc stage list --name-only | grep -vx tune)
for i in "${!stages[@]}"; do
  stage="${stages[$i]}"
  step "Pipeline stage $((i + 1))/${#stages[@]}: $stage"
  # --quiet: DVC's own lines (and its "Use \`dvc push\`" hint: every output here is push:
  # false); the stage's log lines still go to the log.
  dvc repro --quiet --single-item "${force[@]}" "$stage" >>"$PIPELINE_LOG" 2>&1 \
    || failed "stage $stage" "$PIPELINE_LOG"
done

step "Starting the model server on http://$HOST:$PORT"
MODEL_SERVER_HOST="$HOST" MODEL_SERVER_HTTP_PORT="$PORT" model-server >"$SERVER_LOG" 2>&1 &
server=$!
stop_server() {
  trap - EXIT
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap 'stop_server; exit 0' INT TERM
trap stop_server EXIT  # up.sh failing after this point leaves no server behind

step "Waiting for the model to load"
# Ready means a version is loaded and answers (/v2/health/ready), not merely listening.
until python -c "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2)" \
  "http://127.0.0.1:$PORT/v2/health/ready" 2>/dev/null; do
  kill -0 "$server" 2>/dev/null || failed "the model server" "$SERVER_LOG"
  sleep 0.5
done

status="$(training-job status)"
python - "$HOST" "$PORT" "$SERVER_LOG" "$PIPELINE_LOG" "$status" <<'PY'
import json
import os
import sys
import urllib.request

host, port, server_log, pipeline_log, status_json = sys.argv[1:]
url = f"http://{host}:{port}"
local = f"http://127.0.0.1:{port}"
with urllib.request.urlopen(f"{local}/health", timeout=5) as response:
    health = json.load(response)
status = json.loads(status_json)
name, version = health["model_name"], health["model_version"]
champion = status.get("champion") or {}
r2 = champion.get("tags", {}).get("test_r2") if str(champion.get("version")) == version else None
row = [8.3252, 41.0, 6.984127, 1.02381, 322.0, 2.555556, 37.88, -122.23]
v1 = json.dumps({"instances": [row]})
v2 = json.dumps({"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP64", "data": row}]})
# With API keys configured, prediction needs one (docs/security.md).
keyed = any(os.environ.get(f"MODEL_SERVER_USER_API_KEYS{s}") for s in ("", "_FILE"))
auth = " -H 'Authorization: Bearer YOUR_USER_KEY'" if keyed else ""
served = f"{name} version {version}"
if r2 is not None:
    served += f" ({champion['tags'].get('candidate', '?')}), test R² {float(r2):.4f}"
print(f"""
California Housing model server: ready
  champion    {served}
  URL         {url}
  API docs    {url}/docs   (clients: docs/clients.md)
  predict v1  curl -s {url}/v1/models/{name}:predict{auth} -d '{v1}'
  predict v2  curl -s {url}/v2/models/{name}/infer{auth} -H 'Content-Type: application/json' -d '{v2}'
  MLflow UI   .venv/bin/mlflow ui --backend-store-uri {status["tracking_uri"]} --port 5000
  logs        {server_log} (server), {pipeline_log} (pipeline)
Ctrl-C stops the server.""")
PY

wait "$server"
