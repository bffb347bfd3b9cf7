"""Telemetry is off wherever the project runs MLflow and DVC: DVC's analytics daemon is never
started by a DVC command in the repository, MLflow's telemetry client never starts in the
commands, and the images carry the same switches. Each check has its positive control: the
same run with telemetry left on does send (to a listener on loopback) or start its thread."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from housing.telemetry import TELEMETRY_OFF
from tests.support.pipeline import REPO

BIN = Path(sys.executable).parent
# Variables under which the libraries turn telemetry off by themselves (CI, pytest): a
# positive control must not inherit them.
SELF_DISABLING = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "DVC_TEST", "DVC_DAEMON")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SELF_DISABLING and k not in TELEMETRY_OFF and not k.startswith("MLFLOW_")
    }
    env.update(extra)
    return env


@pytest.mark.parametrize("image", ["model-server", "training-job"])
def test_the_images_turn_telemetry_off(image: str) -> None:
    text = (REPO / "docker" / f"{image}.Dockerfile").read_text()
    for name, value in TELEMETRY_OFF.items():
        assert re.search(rf"^\s*(ENV\s+)?{name}={value}\b", text, re.MULTILINE), name


def test_the_repository_turns_dvc_analytics_off() -> None:
    result = subprocess.run(
        [str(BIN / "dvc"), "config", "core.analytics"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "false"


class Reports:
    """An HTTP listener on loopback that stands in for DVC's analytics endpoint."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.received:
            time.sleep(0.1)
        return bool(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def reports() -> Iterator[Reports]:
    listener = Reports()
    yield listener
    listener.close()


def dvc_repo(path: Path, config: Path | None) -> Path:
    """A new git + DVC repository; its .dvc/config replaced by `config` if given."""
    path.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    env = clean_env(**TELEMETRY_OFF)  # `dvc init` is a command too
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=path, env=env, check=True)
    if config is not None:
        shutil.copy(config, path / ".dvc" / "config")
    return path


def dvc_status(repo: Path, env: dict[str, str]) -> None:
    subprocess.run([str(BIN / "dvc"), "status", "-q"], cwd=repo, env=env, check=True, timeout=120)


@pytest.mark.slow
def test_no_dvc_command_of_the_project_starts_the_analytics_daemon(
    tmp_path: Path, reports: Reports
) -> None:
    endpoint = {"DVC_ANALYTICS_ENDPOINT": reports.url}
    # Positive control: DVC's defaults send a report from a daemon after the command.
    started = time.monotonic()
    dvc_status(dvc_repo(tmp_path / "default", None), clean_env(**endpoint))
    assert reports.wait(60), "DVC's default did not report: the check below would prove nothing"
    took = time.monotonic() - started
    assert reports.received[0].get("cmd_class")
    reports.received.clear()
    # The repository's config (a clone, up.sh, the tests) and the commands' and images'
    # environment (housing/telemetry.py), each alone.
    dvc_status(dvc_repo(tmp_path / "project", REPO / ".dvc" / "config"), clean_env(**endpoint))
    dvc_status(dvc_repo(tmp_path / "env", None), clean_env(**endpoint, **TELEMETRY_OFF))
    assert not reports.wait(max(5.0, 3 * took)), reports.received


PROBE = """
import json, os, runpy, sys, threading
started = []
start = threading.Thread.start
def record(self):
    started.append(self.name)
    return start(self)
threading.Thread.start = record
sys.argv = ["training-job", "status", "--params", sys.argv[1]]
try:
    runpy.run_module("training_job", run_name="__main__")
except SystemExit:
    pass
from mlflow.telemetry.client import get_telemetry_client
print(json.dumps({"threads": started, "client": get_telemetry_client() is not None}))
"""


def probe(tmp_path: Path, **env: str) -> dict[str, object]:
    """`training-job status` on an empty store, with every thread it starts recorded."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "params.yaml")],
        cwd=tmp_path,
        env=clean_env(TRAINING_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO), **env),
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return dict(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.slow
def test_the_training_job_starts_no_mlflow_telemetry(tmp_path: Path) -> None:
    # Positive control: the user turns it back on, as README.md says.
    # (Offline, the client drops itself once its config fetch fails: its threads are the sign.)
    on = probe(tmp_path, MLFLOW_DISABLE_TELEMETRY="false")
    assert "GetTelemetryConfig" in on["threads"], on
    off = probe(tmp_path)
    assert off["client"] is False, off
    assert not [name for name in off["threads"] if "Telemetry" in name], off
