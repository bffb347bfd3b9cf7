"""MODEL_SERVER_LOG_FORMAT=json and TRAINING_JOB_LOG_FORMAT=json: every line a process writes
is one JSON object, with the request id and the model version on the lines of a request."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from housing.logformat import MODEL_VERSION, REQUEST_ID, JsonFormatter
from model_server.settings import ServerSettings
from tests.support.pipeline import REPO, TrainedRegistry, pipeline_env, run_training_job
from tests.support.server import MODEL, ROWS, start_server
from training_job.settings import TrainingSettings

FIELDS = {"time", "level", "logger", "message"}


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Every line as a JSON object with the four fields; fails on the first that is not."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
        assert isinstance(entry, dict) and entry.keys() >= FIELDS, line
        entries.append(entry)
    return entries


def test_formatter_writes_one_line_with_the_context_and_the_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.day_one.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        tokens = (REQUEST_ID.set("req-1"), MODEL_VERSION.set("7"))
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception("failed for %s", "caller")
        REQUEST_ID.reset(tokens[0])
        MODEL_VERSION.reset(tokens[1])
        logger.warning("outside a request")
    finally:
        logger.removeHandler(handler)
    first, second = parse_lines(stream.getvalue())
    assert first["message"] == "failed for caller" and first["level"] == "ERROR"
    assert first["request_id"] == "req-1" and first["model_version"] == "7"
    assert "ValueError: bad\nthing" in first["exception"]
    assert first["time"].endswith("+00:00")
    assert "request_id" not in second and "model_version" not in second


@pytest.mark.parametrize("value", ["JSON", " json ", "text"])
def test_settings_accept_the_two_formats(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SERVER_LOG_FORMAT", value)
    monkeypatch.setenv("TRAINING_JOB_LOG_FORMAT", value)
    assert ServerSettings().log_format == value.strip().lower()
    assert TrainingSettings().log_format == value.strip().lower()


def test_settings_refuse_another_format_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODEL_SERVER_LOG_FORMAT", "logfmt")
    monkeypatch.setenv("TRAINING_JOB_LOG_FORMAT", "logfmt")
    with pytest.raises(ValidationError, match="must be one of text, json, not 'logfmt'"):
        ServerSettings()
    with pytest.raises(ValidationError, match="TRAINING_JOB_LOG_FORMAT"):
        TrainingSettings()


def test_both_commands_refuse_a_bad_format_in_one_line_and_exit_2(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    for command, variable in (
        ([str(bin_dir / "model-server")], "MODEL_SERVER_LOG_FORMAT"),
        ([str(bin_dir / "training-job"), "status"], "TRAINING_JOB_LOG_FORMAT"),
    ):
        result = subprocess.run(
            command,
            env={"PATH": str(bin_dir), variable: "xml"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert f"{variable}: must be one of text, json, not 'xml'" in result.stderr
        assert "Traceback" not in result.stderr


def test_server_writes_only_json_lines(trained_registry: TrainedRegistry, tmp_path: Path) -> None:
    server = start_server(
        tmp_path, trained_registry.tracking_uri, log_format="json", access_log="true"
    )
    try:
        server.wait_ready()
        ok = server.post(
            f"/v1/models/{MODEL}:predict",
            json={"instances": [list(ROWS[0])]},
            headers={"X-Request-ID": "req-ok"},
        )
        bad = server.post(
            f"/v2/models/{MODEL}/infer",
            json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]},
            headers={"X-Request-ID": "req-bad"},
        )
        assert server.get("/metrics").status_code == 200
    finally:
        assert server.stop() == 0
    assert ok.status_code == 200 and bad.status_code == 400
    entries = parse_lines(server.log())
    loggers = {entry["logger"] for entry in entries}
    assert {"kserve", "uvicorn.error", "uvicorn.access", "model_server.server"} <= loggers
    by_request = {
        entry["request_id"]: entry
        for entry in entries
        if entry["logger"] == "uvicorn.access" and "request_id" in entry
    }
    assert by_request["req-ok"]["model_version"] == ok.json()["model_version"] == "1"
    assert '" 200' in by_request["req-ok"]["message"]
    assert '" 400' in by_request["req-bad"]["message"]
    # The error line of the bad request names it too.
    assert any(
        e.get("request_id") == "req-bad" and e["logger"] == "model_server.errors" for e in entries
    )


def test_training_job_writes_only_json_lines(tmp_path: Path) -> None:
    env = {**pipeline_env(tmp_path / "state"), "TRAINING_JOB_LOG_FORMAT": "json"}
    result = run_training_job(
        "prepare",
        "--raw",
        str(REPO / "data" / "raw"),
        "--out",
        str(tmp_path / "prepared"),
        "--metrics",
        str(tmp_path / "metrics"),
        env=env,
    )
    entries = parse_lines(result.stderr)
    assert any(
        e["logger"] == "training_job.prepare" and "prepared 20640 rows" in e["message"]
        for e in entries
    )
