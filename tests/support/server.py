"""Helpers of the model server tests: the server as a real process, and registry edits.

The server is started as a user starts it (`python -m model_server`), configured by the
environment only, bound to 127.0.0.1 on a free port, with its output in a file (a pipe that
nobody reads would block it under load).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# Only to build test requests (re-exported): the server reads them from the model's signature.
from housing.contract import FEATURES as FEATURES
from tests.support.servers import free_port as free_port  # re-exported for the tests here

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO / "tests" / "testdata" / "model_server"
MODEL = "california-housing"
# The shared server accepts this many instances per request (the default is 1000).
MAX_INSTANCES = 2000
# The compiled-trees cache of every test server (tests/conftest.py sets it for the run).
COMPILED_TREES_ENV = "TESTS_COMPILED_TREES_DIR"
# The shared server's backend: ONNX when ready, the compiled trees once they are verified.
SWAPPING_BACKENDS = frozenset({"onnxruntime", "lleaves"})
# Two real block groups (the first rows of the input example family).
ROWS = (
    (8.3252, 41.0, 6.984127, 1.02381, 322.0, 2.555556, 37.88, -122.23),
    (3.0, 20.0, 5.0, 1.0, 1000.0, 3.0, 34.0, -118.0),
)


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class ClientThreads:
    """Client threads, each running `_run(index)` until `stop()`: a test's traffic."""

    def __init__(self, threads: int, join_timeout: float = 90.0) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._join_timeout = join_timeout
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        raise NotImplementedError

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:  # stop() in a `finally` may come before start()
                thread.join(self._join_timeout)

    def __enter__(self) -> ClientThreads:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path
    database: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    @property
    def spill_dir(self) -> Path:
        """The prediction log's spill folder (the server's default, in its workdir)."""
        return self.workdir / "state" / "spill"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """A sample of /metrics now (model_name implied), which must be exported."""
        value = sample(self.get("/metrics", timeout=10).text, name, **labels)
        assert value is not None, f"{name} {labels} not exported"
        return value

    def _status(self, path: str) -> int | None:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited {self.process.returncode}:\n{self.log()[-4000:]}")
        try:
            return self.get(path, timeout=2.0).status_code
        except httpx.HTTPError:
            return None

    def wait_live(self, timeout: float = 60.0) -> None:
        wait_for(lambda: self._status("/v2/health/live") == 200, timeout, "live")

    def wait_ready(self, timeout: float = 90.0) -> None:
        wait_for(lambda: self._status("/v2/health/ready") == 200, timeout, "ready")

    def wait_version(self, version: str, timeout: float = 90.0) -> None:
        def serving() -> bool:
            self._status("/health")
            return self.get("/health").json().get("model_version") == version

        wait_for(serving, timeout, f"version {version}")

    def stop(self, timeout: float = 40.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def rows(self, where: str = "1=1") -> list[dict[str, Any]]:
        """The logged predictions (one per instance) of the request rows `where` selects."""
        from tests.support.records import log_rows

        return log_rows(f"sqlite:///{self.database}", where)


def start_server(
    workdir: Path, tracking_uri: str, env_extra: dict[str, str] | None = None, **settings: str
) -> ServerProcess:
    """`python -m model_server` in `workdir`; settings are MODEL_SERVER_* without prefix."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    database = workdir / "state" / "serving.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MODEL_SERVER_"))}
    env.update(
        {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MODEL_SERVER_HOST": "127.0.0.1",
            "MODEL_SERVER_HTTP_PORT": str(port),
            "MODEL_SERVER_DATABASE_URL": f"sqlite:///{database}",
            "MODEL_SERVER_POLL_INTERVAL_SECONDS": "1",
            "PYTHONPATH": str(REPO),
        }
    )
    if COMPILED_TREES_ENV in os.environ:
        env["MODEL_SERVER_COMPILED_TREES_DIR"] = os.environ[COMPILED_TREES_ENV]
    env.update({f"MODEL_SERVER_{k.upper()}": v for k, v in settings.items()})
    env.update(env_extra or {})
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "model_server"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(process, port, workdir, log_path, database)


# -- registry edits, on a copy of the session's registry ----------------------------------


def copy_registry(source_db: Path, dest: Path) -> str:
    """A private copy of an MLflow SQLite store (artifacts stay where they are, read-only).

    SQLite's backup API, not a file copy: recent writes may still sit in the WAL file.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source_db) as source, sqlite3.connect(dest / "mlflow.db") as copy:
        source.backup(copy)
    return f"sqlite:///{dest / 'mlflow.db'}"


def mlflow_client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def register_candidate(tracking_uri: str, candidate: str) -> str:
    """Register the logged model of a candidate run as a new version; its number."""
    client = mlflow_client(tracking_uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.candidate = '{candidate}'",
    )
    run = runs[0]
    model_uri = run.data.tags["model_uri"]
    import mlflow

    # The registry finds a logged model (models:/m-...) through the global tracking URI.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        version = client.create_model_version(
            MODEL,
            source=model_uri,
            run_id=run.info.run_id,
            model_id=model_uri.removeprefix("models:/"),
            tags={"candidate": candidate},
        )
    finally:
        mlflow.set_tracking_uri(previous)
    return str(version.version)


# -- Prometheus exposition ------------------------------------------------------------------


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric `name` in an exposition: (labels, value)."""
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            found.append((dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value)))
    return found


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample of `name` with exactly these labels (model_name implied)."""
    wanted = {"model_name": MODEL, **labels}
    for found, value in samples(text, name):
        if found == wanted:
            return value
    return None
