"""--help and --version of both commands, as console scripts and as modules: they print and
exit 0, and start nothing (a server that started would not exit)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from housing.version import version
from tests.support.pipeline import REPO
from tests.support.servers import free_port

BIN = Path(sys.executable).parent
COMMANDS = {
    "model-server": [str(BIN / "model-server")],
    "python -m model_server": [sys.executable, "-m", "model_server"],
    "training-job": [str(BIN / "training-job")],
    "python -m training_job": [sys.executable, "-m", "training_job"],
}


def run(command: list[str], port: int) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(BIN), "MODEL_SERVER_HTTP_PORT": str(port), "MODEL_SERVER_HOST": "127.0.0.1"}
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_prints_usage_and_starts_nothing(name: str) -> None:
    result = run([*COMMANDS[name], "--help"], free_port())
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout.lower()
    assert name in result.stdout  # the name the user typed
    assert "--version" in result.stdout
    assert result.stderr == ""  # no log line: nothing was started


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_version_is_the_package_metadata(name: str) -> None:
    result = run([*COMMANDS[name], "--version"], free_port())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == version() != "unknown"
    assert result.stderr == ""


def test_model_server_help_lists_every_setting_by_its_variable() -> None:
    from model_server.cli import environment

    result = run([*COMMANDS["model-server"], "--help"], free_port())
    names = [env for env, _ in environment()]
    assert "MODEL_SERVER_HTTP_PORT" in names and "MLFLOW_TRACKING_URI" in names
    assert all(name in result.stdout for name in names)
    assert "MODEL_SERVER_USER_API_KEYS " in result.stdout  # listed, with no default shown


def test_model_server_refuses_an_unknown_argument_before_starting() -> None:
    result = run([*COMMANDS["model-server"], "--port", "9000"], free_port())
    assert result.returncode == 2
    assert "unrecognized arguments: --port 9000" in result.stderr
