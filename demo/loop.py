"""Play the closed loop end to end on one machine, against a real running server.

    python demo/loop.py [--workdir DIR] [--plot loop.png]

The story: the first data version has no block group of the Los Angeles basin (the company
starts elsewhere). The champion trained on it serves; then traffic from the LA basin arrives,
with feedback. Drift and live error rise, the LA data lands, the retraining job decides to
retrain, the new version is gated and promoted, the server swaps it in without a restart, and
live error recovers. It prints a timeline, writes a plot and measures the time from "new
data landed" to "new champion serving".

Everything runs in a temporary workspace (a copy of this repository with its own MLflow
store, serving database and landing folder); nothing in the repository changes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from housing.contract import FEATURES, TARGET  # noqa: E402
from housing.servingdb import RecordStore  # noqa: E402
from housing.servingdb.retrain import RetrainStore  # noqa: E402
from training_job.features import assign_splits, derive_features, split_buckets  # noqa: E402
from training_job.validate import read_raw  # noqa: E402

RAW = REPO / "data/raw/cal_housing.data"
MODEL = "california-housing"


def la_basin(frame: pd.DataFrame) -> pd.Series:
    return frame["Latitude"].between(33.6, 34.3) & frame["Longitude"].between(-118.5, -117.6)


@dataclass
class Timeline:
    start: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str]] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)

    def event(self, text: str) -> float:
        now = time.monotonic() - self.start
        self.events.append((now, text))
        print(f"[{now:6.1f}s] {text}", flush=True)
        return now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(client: httpx.Client) -> dict[str, dict[str, float]]:
    """model_server_live_r2 and the largest drift PSI, per model version, from /metrics."""
    text = client.get("/metrics").text
    out: dict[str, dict[str, float]] = {}
    for name, key in (
        ("model_server_live_r2", "live_r2"),
        ("model_server_feature_drift_psi", "psi"),
    ):
        for match in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            version = labels.get("model_version", "?")
            value = float(match.group(2))
            entry = out.setdefault(version, {})
            entry[key] = max(entry.get(key, -np.inf), value) if key == "psi" else value
    return out


def send(client: httpx.Client, rows: pd.DataFrame, batch: int = 20) -> str:
    """Predict `rows` (v1) and send their true values as feedback; return the version."""
    version = "?"
    for start in range(0, len(rows), batch):
        part = rows.iloc[start : start + batch]
        response = client.post(
            f"/v1/models/{MODEL}:predict",
            json={"instances": part[list(FEATURES)].to_numpy().tolist()},
        )
        response.raise_for_status()
        body = response.json()
        version = body["model_version"]
        for pid, actual in zip(body["prediction_ids"], part[TARGET], strict=True):
            client.post("/feedback", json={"prediction_id": pid, "actual": float(actual)})
    return version


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep the workspace here")
    parser.add_argument("--plot", type=Path, default=Path("loop.png"), help="timeline plot (PNG)")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="loop-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    timeline = Timeline()

    # A workspace: the repository's files, the first data version without the LA basin.
    work = root / "work"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, work / name)
    lines = RAW.read_text().splitlines()
    raw = read_raw(RAW, min_rows=1)
    frame = derive_features(raw)
    in_la = la_basin(frame).to_numpy()
    (work / "data/raw/cal_housing.data").write_text(
        "\n".join(line for line, la in zip(lines, in_la, strict=True) if not la)
    )
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "add", "-q", "data/raw/cal_housing.data"],
        # The gate's frozen reference set, from the copied DVC remote, as a clone pulls it.
        [sys.executable, "-m", "dvc", "pull", "-q", "--recursive", "data/reference"],
    ):
        subprocess.run(cmd, cwd=work, check=True)
    state, landing = root / "state", root / "landing"
    landing.mkdir(exist_ok=True)
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_", "TRAINING_", "MODEL_SERVER_"))
            # Python's default: cache compiled modules. With it set (as in some sandboxes),
            # every process recompiles mlflow, scipy, sklearn...: 11 of a retraining job's
            # 23 s start-up here, measured with cProfile.
            and k != "PYTHONDONTWRITEBYTECODE"
        },
        "TRAINING_STATE_DIR": str(state),
        "TRAINING_WORKSPACE": str(work),
        "TRAINING_LANDING_URL": str(landing),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "TRAINING_SERVING_DATABASE_URL": f"sqlite:///{state / 'serving.db'}",
        "MODEL_SERVER_DATABASE_URL": f"sqlite:///{state / 'serving.db'}",
        "MODEL_SERVER_HOST": "127.0.0.1",
        "MODEL_SERVER_POLL_INTERVAL_SECONDS": "1",
        "MODEL_SERVER_SIGNALS_INTERVAL_SECONDS": "1",
        # Windows as long as one phase of traffic, so that each reading describes its phase.
        "MODEL_SERVER_LIVE_WINDOW": "400",
        "MODEL_SERVER_DRIFT_WINDOW": "400",
        "MODEL_SERVER_LOG_LEVEL": "WARNING",
    }
    timeline.event(
        f"workspace {root}: first data version without the LA basin ({(~in_la).sum()} rows)"
    )

    def start_retrain() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "training_job", "retrain", "--source", "demo"],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(job: subprocess.Popen[str]) -> dict:
        import json

        out, err = job.communicate()
        if job.returncode != 0:
            raise SystemExit(f"retrain exited {job.returncode}:\n{err[-3000:]}")
        job_log.extend(err.splitlines())
        return json.loads(out)

    def retrain() -> dict:
        return finish(start_retrain())

    job_log: list[str] = []
    first = retrain()
    timeline.event(
        f"initial training: {first['triggers']} -> "
        f"version {first['model_version']} {first['outcome']}"
    )

    port = free_port()
    env["MODEL_SERVER_HTTP_PORT"] = str(port)
    log = (root / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "model_server"],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        while True:
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"server exited; see {root / 'server.log'}")
            time.sleep(0.3)
        timeline.event(f"server ready on port {port}, serving version {first['model_version']}")

        split = assign_splits(split_buckets(raw, "cal-housing-v1"), 20, 15)
        # Traffic is drawn from held-out rows only: no model has trained on what it is asked.
        rest = frame[~in_la & (split == "test")]
        la_test = frame[in_la & (split == "test")]

        def observe(label: str) -> None:
            time.sleep(2.5)  # let the server's signals catch up
            for version, values in scrape(client).items():
                timeline.samples.append(
                    {"t": time.monotonic() - timeline.start, "version": version, **values}
                )
                timeline.event(
                    f"{label}: version {version} "
                    f"live R² {values.get('live_r2', float('nan')):.3f}, "
                    f"max drift PSI {values.get('psi', float('nan')):.3f}"
                )

        version = send(client, rest.sample(400, random_state=1))
        observe("traffic from the known regions")
        version = send(client, la_test.sample(400, random_state=2))
        observe("the LA basin arrives")

        # The LA data lands; the policy allows back-to-back runs for the demo.
        records = RecordStore(env["TRAINING_SERVING_DATABASE_URL"])
        records.migrate()
        RetrainStore(records).set_policy({"min_interval_hours": 0})
        records.close()
        (landing / "la-basin.csv").write_text(
            "\n".join(line for line, la in zip(lines, in_la, strict=True) if la)
        )
        landed = timeline.event("new data landed: landing/la-basin.csv")
        landed_at = time.time()
        # The job runs on while the server may already serve what it promoted (its plots and
        # importances come after the decision): watch the server meanwhile, as a user would.
        job = start_retrain()
        before = client.get("/health").json().get("model_version")
        while client.get("/health").json().get("model_version") == before:
            if job.poll() is not None and job.returncode != 0:
                break
            time.sleep(0.1)
        health = client.get("/health").json()
        serving = timeline.event(f"server now serves version {health.get('model_version')}")
        loaded = _seconds_after(health.get("loaded_at"), landed_at)
        job_log.clear()
        decision = finish(job)
        timeline.event(
            f"retrain decided {decision['triggers']}: {'; '.join(decision['reasons'][:3])}"
        )
        timeline.event(f"retrain {decision['outcome']}: version {decision['model_version']}")
        _job_timeline(job_log, landed_at, loaded)
        version = send(client, la_test.sample(400, random_state=3))
        observe("the LA basin, after the retrain")
        print(
            f"\nnew data landed -> new champion serving: {serving - landed:.1f} s "
            f"(version {version})"
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
    _plot(timeline, args.plot)
    print(f"plot: {args.plot.resolve()}")


def _seconds_after(iso: str | None, start: float) -> float | None:
    from datetime import datetime

    return None if iso is None else datetime.fromisoformat(iso).timestamp() - start


def _job_timeline(lines: list[str], landed_at: float, loaded: float | None) -> None:
    """Where the time went: the retraining job's own log lines (wall-clock timestamps, to the
    millisecond) and the server's loaded_at, in seconds after the data landed."""
    from datetime import datetime

    stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ ([\w.]+): (.*)$")
    events = []
    if loaded is not None:
        events.append((loaded, "server", "the new version is loaded and verified"))
    for line in lines:
        found = stamp.match(line)
        if found:
            at = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            events.append((at - landed_at, "job", f"{found[2]}: {found[3]}"[:110]))
    print("\nwhere the time went (seconds after the data landed):")
    for at, source, text in sorted(events):
        print(f"  {at:6.2f}s {source:6s} {text}")


def _plot(timeline: Timeline, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4), layout="tight")
    ax = fig.subplots()
    for version in sorted({s["version"] for s in timeline.samples}):
        points = [s for s in timeline.samples if s["version"] == version and "live_r2" in s]
        ax.plot(
            [s["t"] for s in points],
            [s["live_r2"] for s in points],
            "o-",
            label=f"live R², v{version}",
        )
    ax.set_ylabel("live R² (from feedback)")
    ax.set_ylim(0, 1)
    psi = [s for s in timeline.samples if "psi" in s]
    right = ax.twinx()  # PSI runs to several units; R² stays within [0, 1]
    right.plot([s["t"] for s in psi], [s["psi"] for s in psi], "s--", color="grey")
    right.set_ylabel("max drift PSI (grey squares; > 0.2 = drift)")
    for t, text in timeline.events:
        if text.startswith(("new data landed", "server now serves")):
            ax.axvline(t, color="black", linewidth=0.8)
            ax.text(t, ax.get_ylim()[1], text.split(":")[0], rotation=90, va="top", fontsize=7)
    ax.set(xlabel="seconds", title="closed loop: drift, live error, retrain, swap")
    ax.legend(fontsize=8, loc="lower center")
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
