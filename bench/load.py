"""Load benchmark: the model server held at a constant rate near its peak, every prediction logged.

    source .venv/bin/activate
    python bench/load.py [--registry DIR] [--hold 60] [--fraction 0.8] [--backends sqlite,postgres]

For each backend of the prediction log (SQLite, then PostgreSQL in a fresh database on
127.0.0.1:5432), with the registry of bench/serving.py (DIR, default
$TMPDIR/bench-serving-registry, trained there if it has no @champion):

1. starts `python -m model_server` at its defaults (but the log's backend and spill folder),
   pinned to core 0 (`taskset -c 0`); this script and its load generator run on core 1;
2. peak: a closed loop (16 keep-alive connections, each sending the next one-row v1 request
   as soon as the answer is in) for a warm-up, then a measured window: the server's peak
   single-row throughput;
3. hold: an open loop at `--fraction` (default 0.8; lower values run, for diagnosis, but fail
   the 80% condition) of that peak, measured right before it, for `--hold` seconds (default
   60): requests leave on a fixed schedule whatever the answers do, each on an idle keep-alive
   connection, at most as many as the peak had (`--connections`; a request that finds none idle
   waits for one, and that wait counts in its latency), and latency is counted from the
   scheduled send time (so a stall is not hidden by the generator waiting for it). With the
   peak's connection count the server works as it did at its peak; with hundreds of
   connections (`--max-connections 256`, the protocol before 2026-12-04) each request paid its
   own wake-up, ~25% more CPU than at the peak, and on a busy machine 80% of the peak became
   more than the core (bench/README.md);
4. stops the server gracefully (SIGTERM; it flushes its log) and counts the rows of the
   prediction log against the successful requests of the whole run (one row per request).

Prints one table (backend, peak req/s, target rate, achieved req/s, p50/p99 ms of the hold,
errors, successes, logged rows, the largest log backlog seen on /metrics), the server's CPU per
request in each phase, and the conditions; exits 1 if one fails: target >= 80% of the peak,
zero errors, the achieved rate within 2% of the target, logged rows == successes, nothing
dropped, the server exiting 0. Writes bench/results/load-<date>.json (ignored by git).
Loopback only; the servers are stopped at the end (their process group), the PostgreSQL
database dropped. See bench/README.md.

Why a generator of our own: wrk is a closed loop (its Lua `delay()` only adds think time per
connection, so a slow answer lowers the offered rate and hides the stall) and wrk2, which
paces, is not packaged here. An asyncio loop on raw sockets on its own core sends several
thousand requests a second, a few times what this server takes (bench/README.md checks it
against a bare ASGI app).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import loadgen  # bench/loadgen.py: the asyncio generator, closed and open loop
import serving  # bench/serving.py: the registry, the rows, starting and stopping servers

REPO = serving.REPO
MODEL_NAME = serving.MODEL_NAME
PREDICT = f"/v1/models/{MODEL_NAME}:predict"
PG_ADMIN = "host=127.0.0.1 port=5432 user=root dbname=postgres connect_timeout=5"
log = serving.log


# -- the server and its log -------------------------------------------------------------------


class Watch:
    """Polls the server's /metrics twice a second: the largest prediction-log backlog seen."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.max_backlog = 0.0
        self.max_spilled = 0.0
        self.last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self, timeout: float = 5.0) -> dict[str, float]:
        status, content = serving.http("GET", self.base + "/metrics", timeout=timeout)
        found: dict[str, float] = {}
        for line in content.decode().splitlines() if status == 200 else []:
            if line.startswith("model_server_prediction_log_"):
                name, value = line.split("{", 1)[0], line.rsplit(" ", 1)[1]
                found[name.removeprefix("model_server_prediction_log_")] = float(value)
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with contextlib.suppress(OSError, ValueError):
                self.last = self.read()
                self.max_backlog = max(self.max_backlog, self.last.get("backlog", 0.0))
                self.max_spilled = max(self.max_spilled, self.last.get("spilled_backlog", 0.0))

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@contextlib.contextmanager
def postgres_database() -> Any:
    import psycopg
    from psycopg import sql

    name = f"bench_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def logged_rows(backend: str, where: str) -> tuple[int, int]:
    """(rows with status 200, all rows) of the prediction log: one row per request."""
    query = "SELECT count(*) FILTER (WHERE status = 200), count(*) FROM request_log"
    if backend == "sqlite":
        with contextlib.closing(sqlite3.connect(where)) as db:
            ok, total = db.execute(query).fetchone()
    else:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port=5432 user=root dbname={where}") as db:
            row = db.execute(query).fetchone()
            assert row is not None
            ok, total = row
    return int(ok), int(total)


def run_backend(
    backend: str,
    database: str,
    tracking_uri: str,
    bodies_file: Path,
    check_body: bytes,
    args: argparse.Namespace,
    work: Path,
) -> dict[str, Any]:
    port = serving.free_port()
    url = (
        f"sqlite:///{database}"
        if backend == "sqlite"
        else f"postgresql+psycopg://root@127.0.0.1:5432/{database}"
    )
    env = serving.base_env() | {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODEL_SERVER_HTTP_PORT": str(port),
        "MODEL_SERVER_HOST": "127.0.0.1",
        "MODEL_SERVER_DATABASE_URL": url,
        "MODEL_SERVER_SPILL_DIR": str(work / f"spill-{backend}"),
        "MODEL_SERVER_MODEL_URI": serving.MODEL_URI,
        "MODEL_SERVER_COMPILED_TREES_DIR": str(args.registry / "compiled-trees"),
    }
    command = ["taskset", "-c", args.server_core, sys.executable, "-m", "model_server"]
    server = serving.Server(
        f"ours-{backend}", "", command, env, port, f"/v1/models/{MODEL_NAME}", PREDICT, "v1"
    )
    result: dict[str, Any] = {"backend": backend, "database_url": url}
    log(f"{backend}: starting the server")
    serving.start(server, work, args.ready_timeout)
    process = server.process
    assert process is not None
    try:
        health = serving.settled_backend(server, args.ready_timeout)
        result["backend_in_use"] = health.get("backend")
        status, _ = serving.http("POST", server.base + PREDICT, check_body)
        if status != 200:
            raise RuntimeError(f"the check request answered {status}")
        result["check_ok"] = 1
        with Watch(server.base) as watch:
            gen = (args.client_core, port, PREDICT, bodies_file)
            log(f"{backend}: ready in {server.extra['ready_seconds']} s; peak, closed loop")
            warm = loadgen.run(*gen, args.warmup, args.connections)
            cpu0, _ = serving.group_usage(process.pid)
            peak = loadgen.run(*gen, args.peak_seconds, args.connections)
            cpu1, _ = serving.group_usage(process.pid)
            peak["server_cpu_share"] = (cpu1 - cpu0) / peak["elapsed_s"]
            peak["server_cpu_us_per_request"] = (cpu1 - cpu0) / max(1, peak["ok"]) * 1e6
            target = round(args.fraction * peak["achieved_per_s"], 1)
            log(
                f"{backend}: peak {peak['achieved_per_s']:.0f} req/s; holding {target:.0f} req/s "
                f"for {args.hold:g} s (load {serving.loadavg()})"
            )
            cpu0, waited0 = serving.group_usage(process.pid)
            hold = loadgen.run(*gen, args.hold, args.max_connections or args.connections, target)
            cpu1, waited1 = serving.group_usage(process.pid)
            # The server's share of its core during the hold, and the time its threads were
            # ready to run but waited for a core (behind each other or other processes).
            hold["server_cpu_share"] = (cpu1 - cpu0) / hold["elapsed_s"]
            hold["server_cpu_us_per_request"] = (cpu1 - cpu0) / max(1, hold["ok"]) * 1e6
            hold["server_cpu_waited_s"] = waited1 - waited0
            log(
                f"{backend}: achieved {hold['achieved_per_s']:.1f} req/s, p99 "
                f"{hold['p99_ms']:.1f} ms, server {hold['server_cpu_share'] * 100:.0f}% of its "
                f"core (load {serving.loadavg()})"
            )
            # Requests the generator gave up on may still be queued in the server: wait.
            result["metrics_before_stop"] = watch.read(timeout=60)
        result.update(
            warmup=warm,
            peak=peak,
            hold=hold,
            target_per_s=target,
            max_backlog=watch.max_backlog,
            max_spilled_backlog=watch.max_spilled,
        )
    finally:
        # SIGTERM, as Kubernetes stops a pod: the server finishes, flushes its log, exits.
        stopping = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # its own session: the group is its pid
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(60)
        result["stop_seconds"] = round(time.monotonic() - stopping, 2)
        result["exit_code"] = process.returncode
        serving.stop(server)  # whatever is left of the group: SIGTERM, then SIGKILL
    spill = work / f"spill-{backend}"
    result["left_in_spill_files"] = sum(
        p.read_bytes().count(b"\n") for p in spill.glob("*.jsonl") if p.stem.isdigit()
    )
    result["logged_ok"], result["logged_rows"] = logged_rows(backend, database)
    runs = (result["warmup"], result["peak"], result["hold"])
    result["successes"] = result["check_ok"] + sum(r["ok"] for r in runs)
    result["errors"] = sum(r["status_errors"] + r["socket_errors"] + r["timeouts"] for r in runs)
    log(
        f"{backend}: stopped in {result['stop_seconds']} s (exit {result['exit_code']}); "
        f"{result['logged_rows']} rows logged for {result['successes']} successes"
    )
    return result


# -- report -----------------------------------------------------------------------------------


def conditions(r: dict[str, Any]) -> list[tuple[str, bool]]:
    hold = r["hold"]
    dropped = r["metrics_before_stop"].get("dropped_rows_total", 0.0)
    return [
        ("zero errors (peak and hold)", r["errors"] == 0),
        (
            "target >= 80% of peak",
            r["target_per_s"] >= 0.8 * r["peak"]["achieved_per_s"] - 0.05,
        ),
        ("achieved within 2% of target", hold["achieved_per_s"] >= 0.98 * r["target_per_s"]),
        ("logged rows == successes", r["logged_rows"] == r["logged_ok"] == r["successes"]),
        ("no row dropped", dropped == 0),
        ("graceful stop: exit 0", r["exit_code"] == 0),
    ]


def table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'backend':<9} {'peak req/s':>10} {'target req/s':>12} {'achieved req/s':>14} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'successes':>9} {'logged rows':>11} "
        f"{'max backlog':>11}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        h = r["hold"]
        lines.append(
            f"{r['backend']:<9} {r['peak']['achieved_per_s']:>10.0f} {r['target_per_s']:>12.0f} "
            f"{h['achieved_per_s']:>14.1f} {h['p50_ms']:>7.2f} {h['p99_ms']:>7.2f} "
            f"{r['errors']:>6} {r['successes']:>9} {r['logged_rows']:>11} "
            f"{r['max_backlog']:>11.0f}"
        )
    for r in results:
        h, p = r["hold"], r["peak"]
        lines.append(
            f"{r['backend']}: peak: p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms, server "
            f"{p['server_cpu_share'] * 100:.0f}% of its core, "
            f"{p['server_cpu_us_per_request']:.0f} CPU us/request. Hold: offered "
            f"{h['offered_per_s']:.1f} req/s, server {h['server_cpu_share'] * 100:.0f}% of its "
            f"core, {h['server_cpu_us_per_request']:.0f} CPU us/request, max {h['max_ms']:.0f} ms, "
            f"send lag p50 {h['send_lag_p50_ms']:.2f} ms p99 {h['send_lag_p99_ms']:.2f} ms, "
            f"{h['connections_opened']} connections. Largest spilled backlog "
            f"{r['max_spilled_backlog']:.0f}; graceful stop in {r['stop_seconds']} s"
        )
        slow = h.get("slow_seconds", {})
        lines.append(
            f"{r['backend']}: hold seconds with an answer over 100 ms: {len(slow)} of "
            f"{round(h['elapsed_s'])}"
            + (": " + ", ".join(f"{s}s {ms:.0f} ms" for s, ms in slow.items()) if slow else "")
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    serving.add_registry_argument(parser)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds at the target rate")
    parser.add_argument(
        "--fraction", type=float, default=0.8, help="target rate / peak (0.8 or more to pass)"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="closed loop before the peak")
    parser.add_argument("--peak-seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16, help="closed loop (peak)")
    parser.add_argument(
        "--max-connections",
        type=int,
        default=0,
        help="open loop (hold); 0: the peak's --connections",
    )
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--client-core", default="1")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    if unknown := set(backends) - {"sqlite", "postgres"}:
        raise SystemExit(f"unknown backends {sorted(unknown)}")
    if not 0.0 < args.fraction <= 1.0:
        raise SystemExit("--fraction must be within (0, 1] (below 0.8 the run fails, by design)")
    os.sched_setaffinity(0, {int(args.client_core)})  # this script, like its generator

    tracking_uri, version = serving.ensure_registry(args.registry)
    _, rows = serving.sample_rows(args.registry)
    bodies = [
        json.dumps({"instances": [row]}, separators=(",", ":"))
        for row in rows[: serving.SINGLE_BODIES]
    ]
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    bodies_file = work / "bodies.json"
    bodies_file.write_text(json.dumps(bodies))
    started = datetime.now(UTC)
    load_start = serving.loadavg()
    results = []
    try:
        for backend in backends:
            with (
                postgres_database()
                if backend == "postgres"
                else contextlib.nullcontext(str(work / "serving.db"))
            ) as database:
                results.append(
                    run_backend(
                        backend, database, tracking_uri, bodies_file, bodies[0].encode(), args, work
                    )
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"Load benchmark {started:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores; "
        f"server on core {args.server_core}, asyncio generator on core {args.client_core}; "
        f"model version {version['version']} ({version.get('candidate')}); one-row v1 requests; "
        f"peak: {args.connections} connections closed loop, {args.warmup:g} s warm-up + "
        f"{args.peak_seconds:g} s; hold: open loop at {args.fraction:g} x peak for {args.hold:g} s "
        f"on at most {args.max_connections or args.connections} connections"
    )
    print(f"load average at the start: {load_start}")
    print(table(results))
    failed = 0
    for r in results:
        for label, ok in conditions(r):
            failed += not ok
            print(f"{r['backend']:<9} {label:<32} {'ok' if ok else 'FAILED'}")
    print(f"load average at the end: {serving.loadavg()}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"load-{started:%Y%m%d-%H%M%S}.json"
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "host": platform.node(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "model_version": version,
                "code": serving.code_identity(),
                "loadavg_start": load_start,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
