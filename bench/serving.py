"""Serving benchmark: the project's model server against two peers, on one machine, in one run.

    source .venv/bin/activate
    python bench/serving.py [--registry DIR] [--duration 15] [--warmup 5] [--connections 16]

Trains a registry into DIR (default: $TMPDIR/bench-serving-registry) or reuses the one there,
then starts, one at a time and each pinned to one core (`taskset -c 0`), three servers of the
same @champion (the LightGBM model), each loading it from the registry:

- ours:           `python -m model_server` at its defaults (ONNX backend, validation, Prometheus
                  metrics, prediction log on SQLite, INFO logs), KServe v1;
- kserve-minimal: bench/peers/kserve_minimal.py, a bare kserve.Model around
                  mlflow.sklearn.load_model and model.predict, KServe v1;
- mlflow-serve:   `mlflow models serve --env-manager local`, /invocations with dataframe_split.

The load generator (wrk with a Lua script, 16 connections, one thread) runs on the other core
(`taskset -c 1`). For each server: single-row requests (req/s, p50, p99) and 100-row requests
(rows/s, p50, p99), each after a warm-up, plus the server's CPU time per request and the time
its threads waited for a core (other processes on core 0). Prints one table and the ratios
against the targets, writes bench/results/serving-<date>.json. Loopback only; every server is
stopped at the end (its whole process group). wrk is installed with apt-get if missing; if that
fails, a Python asyncio load generator (raw HTTP/1.1 keep-alive sockets) takes its place and the
output says so.

Diagnostics, only when named in --servers: asgi-floor, kserve-floor, kserve-floor-hop (what a
request costs with no model), ours-warning (no access log), ours-whatif (bench/what_if.py).
--pyspy PATH adds ours' CPU per thread and a py-spy profile. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import loadgen  # bench/loadgen.py: the asyncio generator (the fallback without wrk)

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
MODEL_NAME = "california-housing"
MODEL_URI = f"models:/{MODEL_NAME}@champion"
EXPECTED_CANDIDATE = "lightgbm"
SINGLE_BODIES = 64  # distinct one-row bodies, sent in turn
BATCH_ROWS = 100
BATCH_BODIES = 16  # distinct 100-row bodies, sent in turn
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets of the serving issue: ours / peer, higher is better except p99 (ours / kserve).
# Issue 15's targets (2026-12-04), then those of the round before, still checked.
TARGETS = (
    ("single-row req/s, ours / kserve-floor", "kserve-floor", "single", "throughput", 2.0),
    ("100-row rows/s, ours / kserve-minimal", "kserve-minimal", "batch", "throughput", 10.0),
    ("single-row req/s, ours / kserve-minimal", "kserve-minimal", "single", "throughput", 3.0),
    ("single-row req/s, ours / mlflow-serve", "mlflow-serve", "single", "throughput", 10.0),
    ("single-row p99, ours / kserve-minimal", "kserve-minimal", "single", "p99_ms", 0.5),
)
# Absolute targets of ours: (label, workload, metric, bound).
ABSOLUTE_TARGETS = (
    ("single-row p99 ms", "single", "p99_ms", 5.0),
    ("100-row rows/s", "batch", "throughput", 150_000.0),
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the registry ----------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINING_"))}


def champion(tracking_uri: str) -> dict[str, str] | None:
    """The @champion version's number and tags, or None if the store has none."""
    code = (
        "import json, sys\n"
        "from mlflow import MlflowClient\n"
        f"c = MlflowClient({tracking_uri!r}, {tracking_uri!r})\n"
        "try:\n"
        f"    v = c.get_model_version_by_alias({MODEL_NAME!r}, 'champion')\n"
        "except Exception:\n"
        "    sys.exit(3)\n"
        "print(json.dumps({'version': v.version, **v.tags}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=base_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_registry_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        type=Path,
        default=Path(tempfile.gettempdir()) / "bench-serving-registry",
        help="workspace of the training pipeline: reused if it holds a @champion",
    )


def ensure_registry(root: Path) -> tuple[str, dict[str, str]]:
    """Reuse root's registry if it has a champion, else run the training pipeline into it."""
    state = root / "state"
    tracking_uri = f"sqlite:///{state / 'mlflow.db'}"
    found = champion(tracking_uri) if (state / "mlflow.db").exists() else None
    if found is None or not (root / "data" / "prepared" / "test.parquet").exists():
        log(f"training a registry in {root} (about 2 minutes)")
        root.mkdir(parents=True, exist_ok=True)
        env = base_env() | {"TRAINING_STATE_DIR": str(state)}
        command = [sys.executable, "-m", "training_job", "pipeline"]
        command += ["--raw", str(REPO / "data" / "raw" / "cal_housing.data")]
        command += ["--params", str(REPO / "params.yaml"), "--workspace", str(root)]
        with (root / "training.log").open("wb") as out:
            done = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=out, check=False)
        if done.returncode != 0:
            tail = (root / "training.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"the training pipeline exited {done.returncode}:\n{tail}")
        found = champion(tracking_uri)
        if found is None:
            raise SystemExit("the pipeline registered no @champion")
    else:
        log(f"reusing the registry in {root}")
    if found.get("candidate") != EXPECTED_CANDIDATE:
        raise SystemExit(f"@champion is {found.get('candidate')}, not {EXPECTED_CANDIDATE}")
    return tracking_uri, found


def sample_rows(root: Path) -> tuple[list[str], list[list[float]]]:
    """Test-split rows (inside every feature's valid range), in the contract's order."""
    import pandas as pd

    prepared = root / "data" / "prepared"
    profile = json.loads((prepared / "feature_profile.json").read_text())
    names = [f["name"] for f in profile["features"]]
    frame = pd.read_parquet(prepared / "test.parquet")[names]
    inside = pd.Series(True, index=frame.index)
    for f in profile["features"]:
        inside &= frame[f["name"]].between(f["valid_min"], f["valid_max"])
    rows = frame[inside].astype("float64").to_numpy().tolist()
    needed = SINGLE_BODIES + BATCH_ROWS * BATCH_BODIES
    if len(rows) < needed:
        raise SystemExit(f"only {len(rows)} test rows, {needed} needed")
    return names, rows


# -- the servers -----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    describe: str
    command: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    predict_path: str
    body_kind: str  # "v1" or "dataframe_split"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def body(self, names: list[str], rows: list[list[float]]) -> bytes:
        if self.body_kind == "v1":
            payload: dict[str, Any] = {"instances": rows}
        else:
            payload = {"dataframe_split": {"columns": names, "data": rows}}
        return json.dumps(payload, separators=(",", ":")).encode()


def servers(
    tracking_uri: str,
    work: Path,
    server_core: str,
    whatif: str = "",
    compiled_trees: Path | None = None,
) -> list[Server]:
    """The three servers compared, then optional diagnostics (named in --servers only)."""
    env = base_env() | {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    pin = ["taskset", "-c", server_core]
    py = sys.executable
    v1_ready, v1_predict = f"/v1/models/{MODEL_NAME}", f"/v1/models/{MODEL_NAME}:predict"

    def ours(name: str, describe: str, **extra_env: str) -> Server:
        port = free_port()
        settings = {
            "MODEL_SERVER_HTTP_PORT": str(port),
            "MODEL_SERVER_HOST": "127.0.0.1",
            "MODEL_SERVER_DATABASE_URL": f"sqlite:///{work / name}.db",
            "MODEL_SERVER_MODEL_URI": MODEL_URI,
        }
        if compiled_trees is not None:  # compiled once per registry, loaded by later runs
            settings["MODEL_SERVER_COMPILED_TREES_DIR"] = str(compiled_trees)
        command = [*pin, py, "-m", "model_server"]
        return Server(
            name, describe, command, env | settings | extra_env, port, v1_ready, v1_predict, "v1"
        )

    def kserve(name: str, describe: str, script: str, *options: str) -> Server:
        port = free_port()
        command = [*pin, py, str(BENCH / "peers" / script), "--model_name", MODEL_NAME]
        command += [*options, "--http_port", str(port), "--enable_grpc", "false"]
        return Server(name, describe, command, env, port, v1_ready, v1_predict, "v1")

    whatif_server = ours(
        "ours-whatif", f"bench/what_if.py: ours with BENCH_WHATIF={whatif}", BENCH_WHATIF=whatif
    )
    whatif_server.command = [*pin, py, str(BENCH / "what_if.py")]
    mlflow_port, floor_port = free_port(), free_port()
    mlflow_serve = [*pin, py, "-m", "mlflow", "models", "serve", "-m", MODEL_URI]
    mlflow_serve += ["--env-manager", "local", "-p", str(mlflow_port), "-h", "127.0.0.1"]
    return [
        ours(
            "ours",
            "python -m model_server (defaults: trees or ONNX, validation, metrics, SQLite log)",
        ),
        kserve(
            "kserve-minimal",
            "bench/peers/kserve_minimal.py (kserve.Model + sklearn predict, KServe defaults)",
            "kserve_minimal.py",
            "--model_uri",
            MODEL_URI,
        ),
        Server(
            "mlflow-serve",
            "mlflow models serve --env-manager local (1 uvicorn worker)",
            mlflow_serve,
            env,
            mlflow_port,
            "/ping",
            "/invocations",
            "dataframe_split",
        ),
        # Diagnostics: ours without the access log, and KServe's stack without any model.
        ours(
            "ours-warning",
            "ours with MODEL_SERVER_LOG_LEVEL=WARNING (no access log lines)",
            MODEL_SERVER_LOG_LEVEL="WARNING",
        ),
        kserve("kserve-floor", "bench/peers/kserve_floor.py: KServe, no model", "kserve_floor.py"),
        whatif_server,
        Server(
            "asgi-floor",
            "bench/peers/asgi_floor.py: bare uvicorn ASGI app, orjson, no model, no logs",
            [*pin, py, str(BENCH / "peers" / "asgi_floor.py"), str(floor_port)],
            env,
            floor_port,
            v1_ready,
            v1_predict,
            "v1",
        ),
        kserve(
            "kserve-floor-hop",
            "kserve_floor.py --hop: KServe, no model, predict via a 2-thread pool",
            "kserve_floor.py",
            "--hop",
        ),
    ]


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310 - loopback URLs built here
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def start(server: Server, work: Path, timeout: float) -> None:
    server.log_path = work / f"{server.name}.log"
    with server.log_path.open("wb") as out:
        server.process = subprocess.Popen(
            server.command,
            cwd=REPO,
            env=server.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() kills all of it
        )
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.process.poll() is not None:
            tail = server.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{server.name} exited {server.process.returncode}:\n{tail}")
        with contextlib.suppress(OSError):
            if http("GET", server.base + server.ready_path, timeout=2)[0] == 200:
                server.extra["ready_seconds"] = round(time.monotonic() - started, 1)
                return
        time.sleep(0.5)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s (log: {server.log_path})")


def stop(server: Server) -> None:
    process = server.process
    if process is None:
        return
    pgid = process.pid  # start_new_session: the group id is the leader's pid
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_pids(pgid):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.2)
        if not group_pids(pgid):
            break
    server.process = None


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def group_usage(pgid: int) -> tuple[float, float]:
    """CPU seconds used and seconds spent waiting for a CPU, by a process group's threads."""
    cpu = waited = 0.0
    for pid in group_pids(pgid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLK_TCK
            for task in Path(f"/proc/{pid}/task").iterdir():
                schedstat = (task / "schedstat").read_text().split()
                waited += int(schedstat[1]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return cpu, waited


def verify(server: Server, names: list[str], rows: list[list[float]]) -> list[float]:
    status, content = http("POST", server.base + server.predict_path, server.body(names, rows))
    if status != 200:
        raise RuntimeError(f"{server.name} answered {status}: {content[:500]!r}")
    predictions = json.loads(content)["predictions"]
    if len(predictions) != len(rows):
        raise RuntimeError(f"{server.name}: {len(predictions)} predictions for {len(rows)} rows")
    return [float(p) for p in predictions]


# -- load generators -------------------------------------------------------------------------

LUA = """
local bodies = {
%(bodies)s
}
local requests = {}
local turn = 0
init = function(args)
  for k, body in ipairs(bodies) do
    requests[k] = wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, body)
  end
end
request = function()
  turn = turn %% #requests + 1
  return requests[turn]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"status_errors":%%d,' ..
    '"socket_errors":%%d,"timeouts":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d,"mean_us":%%.1f}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def ensure_wrk() -> str | None:
    """wrk's path, installing Debian's package if needed; None if it cannot be had."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    log("installing wrk (apt-get install -y wrk)")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    for attempt in (install, ["apt-get", "update", "-q"], install):
        subprocess.run(
            attempt, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


@dataclass(frozen=True)
class Load:
    tool: str  # "wrk" or "python"
    wrk: str | None
    client_core: str
    connections: int


def run_load(
    load: Load, server: Server, bodies: list[bytes], seconds: float, work: Path
) -> dict[str, Any]:
    """Run the load generator against `server` for `seconds`; its summary (latency in us)."""
    if load.tool == "python":
        bodies_file = work / f"{server.name}-{len(bodies)}.json"
        bodies_file.write_text(json.dumps([b.decode() for b in bodies]))
        summary = loadgen.run(
            load.client_core,
            server.port,
            server.predict_path,
            bodies_file,
            seconds,
            load.connections,
        )
        return wrk_form(summary)
    assert load.wrk is not None
    script = work / f"{server.name}-{len(bodies)}.lua"
    script.write_text(
        LUA
        % {
            "bodies": ",\n".join(f"[==[{b.decode()}]==]" for b in bodies),
            "path": server.predict_path,
        }
    )
    command = ["taskset", "-c", load.client_core, load.wrk, "-t1", f"-c{load.connections}"]
    command += [f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script), server.base]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return dict(json.loads(line.removeprefix("WRK_JSON ")))
    raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")


def wrk_form(summary: dict[str, Any]) -> dict[str, Any]:
    """bench/loadgen.py's closed-loop summary in the form of wrk's WRK_JSON line."""
    answered = summary["requests"] - summary["socket_errors"] - summary["timeouts"]
    return {
        "requests": answered,
        "duration_us": round(summary["elapsed_s"] * 1e6),
        "status_errors": summary["status_errors"],
        "socket_errors": summary["socket_errors"],
        "timeouts": summary["timeouts"],
        **{f"{k}_us": round(summary[f"{k}_ms"] * 1e3) for k in ("p50", "p90", "p99", "max")},
        "mean_us": summary["mean_ms"] * 1e3,
    }


# -- one server, both workloads ---------------------------------------------------------------


def measure(
    load: Load,
    server: Server,
    bodies: list[bytes],
    rows_per_request: int,
    warmup: float,
    duration: float,
    work: Path,
    pyspy: str | None = None,
) -> dict[str, Any]:
    """One measurement after a warm-up. With py-spy, the threads are named by a `py-spy dump`
    taken after the warm-up, and each thread's CPU time in the window is reported."""
    assert server.process is not None
    if warmup > 0:
        run_load(load, server, bodies, warmup, work)
    names = thread_names(pyspy, load, server.process.pid) if pyspy else {}
    load_before = loadavg()
    threads0 = thread_cpu(server.process.pid)
    cpu0, wait0 = group_usage(server.process.pid)
    summary = run_load(load, server, bodies, duration, work)
    cpu1, wait1 = group_usage(server.process.pid)
    threads1 = thread_cpu(server.process.pid)
    seconds = summary["duration_us"] / 1e6
    requests = summary["requests"]
    per_request = 1e6 / requests if requests else float("nan")
    return {
        "rows_per_request": rows_per_request,
        "requests": requests,
        "seconds": round(seconds, 2),
        "req_per_s": round(requests / seconds, 1),
        "rows_per_s": round(requests * rows_per_request / seconds, 1),
        "throughput": round(requests * rows_per_request / seconds, 1),
        "p50_ms": summary["p50_us"] / 1000,
        "p90_ms": summary["p90_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "max_ms": summary["max_us"] / 1000,
        "errors": summary["status_errors"] + summary["socket_errors"] + summary["timeouts"],
        "server_cpu_s": round(cpu1 - cpu0, 2),
        "server_cpu_us_per_request": round((cpu1 - cpu0) * per_request, 1),
        "server_cpu_share": round((cpu1 - cpu0) / seconds, 3),
        "server_runqueue_wait_s": round(wait1 - wait0, 2),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        **(
            {"cpu_us_per_request_by_thread": by_thread(names, threads0, threads1, requests)}
            if names
            else {}
        ),
    }


def thread_names(pyspy: str, load: Load, pid: int) -> dict[str, str]:
    """Native thread id -> Python thread name, from `py-spy dump`."""
    command = ["taskset", "-c", load.client_core, pyspy, "dump", "--pid", str(pid)]
    dump = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    return dict(re.findall(r'^Thread (\d+) \([^)]*\): "([^"]+)"', dump, re.M))


def by_thread(
    names: dict[str, str], before: dict[str, float], after: dict[str, float], requests: int
) -> dict[str, float]:
    """CPU us per request of each thread (pool threads together), biggest first."""
    used: dict[str, float] = {}
    for tid, cpu in after.items():
        name = re.sub(r"_\d+$", "", names.get(tid, "other threads"))
        share = (cpu - before.get(tid, 0.0)) * 1e6 / max(requests, 1)
        used[name] = round(used.get(name, 0.0) + share, 1)
    return dict(sorted(used.items(), key=lambda kv: -kv[1]))


def logged_rows(server: Server) -> dict[str, Any]:
    """Rows served vs rows in the prediction log once the server has stopped (and flushed):
    whether the log kept up with the load or dropped records."""
    url = server.env["MODEL_SERVER_DATABASE_URL"]
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
        # One row per request; its instances are the predictions it logged.
        (stored,) = db.execute(
            "SELECT coalesce(sum(instances), 0) FROM request_log WHERE status = 200"
        ).fetchone()
    served = server.extra.get("rows_predicted", 0)
    return {"rows_served": served, "rows_logged": stored, "rows_lost": served - stored}


def rows_predicted(server: Server) -> int:
    """Instances the server predicted: its model_server_prediction_value histogram's count."""
    status, content = http("GET", server.base + "/metrics")
    total = 0.0
    for line in content.decode().splitlines() if status == 200 else []:
        if line.startswith("model_server_prediction_value_count"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def settled_backend(server: Server, timeout: float) -> dict[str, Any]:
    """/health once the backend is final: the compiled trees swapped in, or refused (the
    compile runs after readiness, on the server's core: measuring before would measure it)."""
    deadline = time.monotonic() + timeout
    while True:
        status, content = http("GET", server.base + "/health")
        health: dict[str, Any] = json.loads(content) if status == 200 else {}
        if health.get("backend") == "lleaves" or health.get("compiled_refused") is not None:
            return health
        if time.monotonic() > deadline:
            log(f"{server.name}: backend not settled after {timeout} s: {health.get('backend')}")
            return health
        time.sleep(0.5)


def log_backlog(server: Server) -> int | None:
    status, content = http("GET", server.base + "/health")
    return json.loads(content).get("prediction_log_backlog") if status == 200 else None


def code_identity() -> dict[str, Any]:
    """The commit, and a digest of model_server/ as it is on disk (it may be uncommitted)."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "model_server").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "model_server_changed_files": git("status", "--porcelain", "--", "model_server"),
        "model_server_sha256": digest.hexdigest(),
    }


def bench_server(
    server: Server,
    load: Load,
    names: list[str],
    rows: list[list[float]],
    args: argparse.Namespace,
    work: Path,
) -> dict[str, Any]:
    singles = [server.body(names, [row]) for row in rows[:SINGLE_BODIES]]
    batch_rows = rows[SINGLE_BODIES:]
    batches = [
        server.body(names, batch_rows[i * BATCH_ROWS : (i + 1) * BATCH_ROWS])
        for i in range(BATCH_BODIES)
    ]
    log(f"{server.name}: starting ({' '.join(server.command[3:])})")
    start(server, work, args.ready_timeout)
    log(f"{server.name}: ready in {server.extra['ready_seconds']} s; load {loadavg()}")
    check = verify(server, names, rows[:8])
    result: dict[str, Any] = {
        "describe": server.describe,
        "command": server.command,
        "ready_seconds": server.extra["ready_seconds"],
        "check_predictions": check,
    }
    if server.name.startswith("ours"):
        health = settled_backend(server, args.ready_timeout)
        result["backend"] = health.get("backend")
        result["compiled_refused"] = health.get("compiled_refused")
        log(f"{server.name}: backend {result['backend']} ({health.get('compiled_refused')})")
    workloads = {"single": singles, "batch": batches}
    for kind, bodies, count in (("single", singles, 1), ("batch", batches, BATCH_ROWS)):
        spy = args.pyspy if server.name.startswith("ours") else None
        result[kind] = measure(load, server, bodies, count, args.warmup, args.duration, work, spy)
        r = result[kind]
        if server.name.startswith("ours"):
            # Records accepted but not yet in SQLite: work the measurement did not pay for.
            r["log_backlog_after"] = log_backlog(server)
        log(
            f"{server.name} {kind}: {r['req_per_s']:.0f} req/s, {r['rows_per_s']:.0f} rows/s, "
            f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, errors {r['errors']}, "
            f"load {r['loadavg_after']}"
        )
    if args.pyspy and server.name == "ours":
        stamp = time.strftime("%Y%m%d-%H%M%S")
        profile(args.pyspy, load, server, workloads, result, args.duration, args.out / stamp)
    if server.name.startswith("ours"):
        time.sleep(2)  # requests in flight when the load generator stopped finish
        server.extra["rows_predicted"] = rows_predicted(server)
    return result


def profile(
    pyspy: str,
    load: Load,
    server: Server,
    bodies: dict[str, list[bytes]],
    result: dict[str, Any],
    seconds: float,
    out: Path,
) -> None:
    """Extra windows under the same load with py-spy attached (not part of the figures):
    raw stacks per thread (summarized by step with bench/pyspy_summary.py), a dump, and a
    flame graph of the 1-row load."""
    from pyspy_summary import report

    assert server.process is not None
    pid = str(server.process.pid)
    spy = ["taskset", "-c", load.client_core, pyspy]
    out.mkdir(parents=True, exist_ok=True)
    windows = [(kind, "raw") for kind in bodies] + [("single", "flamegraph")]
    profiles: dict[str, Any] = {}
    for kind, form in windows:
        target = out / f"{server.name}-{kind}.{'raw' if form == 'raw' else 'svg'}"
        with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(1) as pool:
            # The load runs 4 s longer than the recording, which starts after 2 s.
            generator = pool.submit(
                run_load, load, server, bodies[kind], seconds + 4, Path(scratch)
            )
            time.sleep(2)
            record = [*spy, "record", "--pid", pid, "-d", str(round(seconds)), "-r", "100"]
            record += ["--format", form, "-o", str(target)]
            if form == "raw":
                record.append("--threads")
            subprocess.run(record, capture_output=True, check=False)
            if form == "raw":
                dump = subprocess.run(
                    [*spy, "dump", "--pid", pid], capture_output=True, text=True, check=False
                )
                (out / f"{server.name}-{kind}-dump.txt").write_text(dump.stdout + dump.stderr)
            generator.result()
        if form == "raw" and target.exists():
            text = report(target, result[kind].get("cpu_us_per_request_by_thread"))
            profiles[kind] = text
            log(f"{server.name} {kind} profile:\n{text}")
    result["profile"] = {"dir": str(out), "summaries": profiles}


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds used by each thread (by native id) of a process."""
    used = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (task / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            used[task.name] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return used


# -- report ----------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    """One line per server; CPU us/req is the server's CPU time (all its processes) per
    request, cpu% its share of its core during the measurement (below ~95%: it was not the
    bottleneck, or other processes took the core)."""
    head = (
        f"{'server':<16} {'1-row req/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10}"
        f" {'cpu%':>4} | {'100-row rows/s':>14} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'CPU us/req':>10} {'cpu%':>4} | {'errors':>6}  load1 (1-row, 100-row)"
    )
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        s, b = r["single"], r["batch"]
        lines.append(
            f"{name:<16} {s['req_per_s']:>11.0f} {s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f}"
            f" {s['server_cpu_us_per_request']:>10.0f} {s['server_cpu_share'] * 100:>4.0f}"
            f" | {b['rows_per_s']:>14.0f} {b['p50_ms']:>7.2f} {b['p99_ms']:>7.2f}"
            f" {b['server_cpu_us_per_request']:>10.0f} {b['server_cpu_share'] * 100:>4.0f}"
            f" | {s['errors'] + b['errors']:>6}  {s['loadavg_after'][0]:.2f}, "
            f"{b['loadavg_after'][0]:.2f}"
        )
    for name, r in results.items():
        if "log_backlog_after" in r["single"]:
            lines.append(
                f"{name}: prediction records not yet in SQLite after the 1-row run "
                f"{r['single']['log_backlog_after']}, after the 100-row run "
                f"{r['batch']['log_backlog_after']}"
            )
        for kind in ("single", "batch"):
            if split := r[kind].get("cpu_us_per_request_by_thread"):
                parts = ", ".join(f"{thread} {us:.0f}" for thread, us in split.items())
                lines.append(f"{name} {kind}: CPU us/request by thread: {parts}")
        if "prediction_log" in r:
            p = r["prediction_log"]
            lines.append(
                f"{name}: prediction log after stop: {p['rows_logged']} of {p['rows_served']} "
                f"rows served, {max(p['rows_lost'], 0)} lost"
                + (" (buffer overflowed: the oldest dropped)" if p["rows_lost"] > 0 else "")
            )
    return "\n".join(lines)


def ratios(results: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    lines, rows = [], []
    ours = results.get("ours")
    for label, peer, kind, metric, target in TARGETS:
        if ours is None or peer not in results:
            continue
        ratio = ours[kind][metric] / results[peer][kind][metric]
        met = ratio <= target if metric == "p99_ms" else ratio >= target
        bound = "<=" if metric == "p99_ms" else ">="
        # Contention-free estimate: the peer's CPU time per row over ours.
        cpu_ratio = None
        if metric == "throughput":
            cpu = ours[kind]["server_cpu_us_per_request"]
            cpu_ratio = results[peer][kind]["server_cpu_us_per_request"] / cpu if cpu else None
        rows.append(
            {
                "ratio": label,
                "value": round(ratio, 3),
                "cpu_time_ratio": None if cpu_ratio is None else round(cpu_ratio, 3),
                "target": target,
                "met": met,
            }
        )
        by_cpu = "" if cpu_ratio is None else f"   (CPU time per row: {cpu_ratio:.2f}x)"
        lines.append(
            f"{label:<42} {ratio:>6.2f}x   target {bound} {target:g}x   "
            f"{'met   ' if met else 'MISSED'}{by_cpu}"
        )
    for label, kind, metric, target in ABSOLUTE_TARGETS:
        if ours is None:
            continue
        value = ours[kind][metric]
        met = value <= target if metric == "p99_ms" else value >= target
        bound = "<=" if metric == "p99_ms" else ">="
        rows.append({"ratio": label, "value": value, "target": target, "met": met})
        lines.append(
            f"{label + ', ours':<42} {value:>7g}   target {bound} {target:g}   "
            f"{'met' if met else 'MISSED'}"
        )
    minimal, kserve_floor = results.get("kserve-minimal"), results.get("kserve-floor")
    if minimal is not None and kserve_floor is not None:
        # What a ratio to kserve-minimal can reach at all: KServe's own stack with a no-op
        # model over the minimal predictor (a fast champion makes the peer close to its floor).
        ceiling = kserve_floor["batch"]["throughput"] / minimal["batch"]["throughput"]
        rows.append({"ratio": "100-row rows/s, kserve-floor / kserve-minimal", "value": ceiling})
        lines.append(
            f"{'100-row rows/s, kserve-floor / kserve-minimal':<42} {ceiling:>6.2f}x   "
            "(KServe with no model at all, against the minimal predictor)"
        )
    floor = results.get("asgi-floor")
    if ours is not None and floor is not None:
        # The distance to a bare ASGI app on this core: the limit of a Python server here.
        cpu = {
            kind: ours[kind]["server_cpu_us_per_request"]
            / max(floor[kind]["server_cpu_us_per_request"], 1e-9)
            for kind in ("single", "batch")
        }
        rows.append({"ratio": "CPU us/request, ours / asgi-floor", "value": cpu})
        lines.append(
            f"{'CPU us/request, ours / asgi-floor':<42} single-row {cpu['single']:.1f}x, "
            f"100-row {cpu['batch']:.1f}x"
        )
    return "\n".join(lines), rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_registry_argument(parser)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up before each")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--servers", default="ours,kserve-minimal,mlflow-serve")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--client-core", default="1")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument(
        "--pyspy",
        default=None,
        help="py-spy binary: profile ours in extra windows after its measurements",
    )
    parser.add_argument(
        "--whatif",
        default="",
        help="patches of bench/what_if.py for the ours-whatif server, comma-separated "
        "(see its docstring: nocoalesce, nice, writer-rows, ...)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    args = parser.parse_args(argv)

    wrk = ensure_wrk() if args.loadgen in ("auto", "wrk") else None
    if args.loadgen == "wrk" and wrk is None:
        raise SystemExit("wrk is not installed and could not be installed")
    tool = "wrk" if wrk else "python"
    if tool == "python":
        log("wrk unavailable: using the Python asyncio load generator (slower client)")
    load = Load(tool, wrk, args.client_core, args.connections)

    tracking_uri, version = ensure_registry(args.registry)
    names, rows = sample_rows(args.registry)
    log(f"@champion is version {version['version']} ({version.get('candidate')}); load {loadavg()}")

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    wanted = args.servers.split(",")
    cache = args.registry / "compiled-trees"
    known = {s.name: s for s in servers(tracking_uri, work, args.server_core, args.whatif, cache)}
    if unknown := set(wanted) - set(known):
        raise SystemExit(f"unknown servers {sorted(unknown)}; known: {', '.join(known)}")
    chosen = [known[name] for name in wanted]
    results: dict[str, Any] = {}
    started = datetime.now(UTC)
    try:
        for server in chosen:
            try:
                results[server.name] = bench_server(server, load, names, rows, args, work)
            finally:
                stop(server)
                log(f"{server.name}: stopped")
            if server.name.startswith("ours"):
                results[server.name]["prediction_log"] = logged_rows(server)
    finally:
        for server in chosen:
            stop(server)
        if args.keep_logs:
            log(f"server logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    checks = [r["check_predictions"] for n, r in results.items() if "floor" not in n]
    agreement = max(
        (abs(a - b) for other in checks[1:] for a, b in zip(checks[0], other, strict=True)),
        default=0.0,
    )
    print()
    print(
        f"Serving benchmark {started:%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores; servers on core {args.server_core}, {tool} on core "
        f"{args.client_core}, {args.connections} connections, {args.warmup:g} s warm-up + "
        f"{args.duration:g} s per measurement; model version {version['version']} "
        f"({version.get('candidate')}); predictions agree within {agreement:.1e}"
    )
    print(table(results))
    text, ratio_rows = ratios(results)
    if text:
        print()
        print(text)
    print(f"load average at the end: {loadavg()}")

    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"serving-{started:%Y%m%d-%H%M%S}.json"
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "host": platform.node(),
                "cpus": os.cpu_count(),
                "load_generator": tool,
                "connections": args.connections,
                "warmup_s": args.warmup,
                "duration_s": args.duration,
                "server_core": args.server_core,
                "client_core": args.client_core,
                "model_version": version,
                "code": code_identity(),
                "prediction_agreement": agreement,
                "results": results,
                "ratios": ratio_rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
