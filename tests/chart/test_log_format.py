"""The chart asks the server and the jobs for one log format (logFormat): JSON by default, one
object per line for a cluster's log pipeline (the settings that read it: model_server and
training_job; test_processes.py checks that they do)."""

from __future__ import annotations

import pytest

from tests.chart.conftest import find, pod_spec, render
from tests.chart.test_telemetry import ROUTES, containers, env


@pytest.mark.parametrize(("value_set", "fmt"), [(None, "json"), (ROUTES, "text")])
def test_log_format_env(tools, value_set: str | None, fmt: str) -> None:
    found = containers(render("helm4", value_set))
    assert env(found["predictor"])["MODEL_SERVER_LOG_FORMAT"] == fmt
    for job in ("training", "retrain"):
        assert env(found[job])["TRAINING_JOB_LOG_FORMAT"] == fmt
    # the other containers run neither program
    docs = render("helm4", value_set)
    postgres = pod_spec(find(docs, "StatefulSet")[0])["containers"][0]
    assert "MODEL_SERVER_LOG_FORMAT" not in env(postgres)
