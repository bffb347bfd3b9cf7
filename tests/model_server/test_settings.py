"""Settings: the environment names the Helm chart relies on, defaults, and refusals."""

from __future__ import annotations

import inspect

import pytest
from pydantic import ValidationError

from model_server.settings import ServerSettings

CHART_NAMES = {
    "MODEL_SERVER_HTTP_PORT": ("http_port", 8080, "9090", 9090),
    "MODEL_SERVER_GRPC_PORT": ("grpc_port", 8081, "9091", 9091),
    "MODEL_SERVER_MODEL_NAME": ("model_name", "california-housing", "other", "other"),
    "MODEL_SERVER_MODEL_URI": (
        "model_uri",
        "models:/california-housing@champion",
        "models:/other/3",
        "models:/other/3",
    ),
    "MODEL_SERVER_POLL_INTERVAL_SECONDS": ("poll_interval_seconds", 30.0, "2.5", 2.5),
    "MODEL_SERVER_DATABASE_URL": (
        "database_url",
        "sqlite:///state/serving.db",
        "postgresql+psycopg://u@db/x",
        "postgresql+psycopg://u@db/x",
    ),
    "MODEL_SERVER_MAX_INSTANCES": ("max_instances", 1000, "10", 10),
    "MODEL_SERVER_MAX_BODY_BYTES": ("max_body_bytes", 1_048_576, "2048", 2048),
    "MODEL_SERVER_LOG_LEVEL": ("log_level", "INFO", "debug", "DEBUG"),
    "MODEL_SERVER_WORKERS": ("workers", 1, "1", 1),
    "MLFLOW_TRACKING_URI": (
        "tracking_uri",
        "sqlite:///state/mlflow.db",
        "http://mlflow:5000",
        "http://mlflow:5000",
    ),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CHART_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = ServerSettings()
    for field, default, _, _ in CHART_NAMES.values():
        assert getattr(settings, field) == default, field


@pytest.mark.parametrize("env_name", sorted(CHART_NAMES))
def test_each_chart_name_is_read(env_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    field, _, raw, parsed = CHART_NAMES[env_name]
    monkeypatch.setenv(env_name, raw)
    assert getattr(ServerSettings(), field) == parsed


def test_every_field_is_documented() -> None:
    text = inspect.getsource(ServerSettings)
    for field in ServerSettings.model_fields:
        after = text.split(f"    {field}:", 1)[1]
        assert '"""' in after.split("\n\n", 1)[0], f"{field} has no docstring"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODEL_SERVER_WORKERS", "2"),
        ("MODEL_SERVER_MODEL_URI", "runs:/abc/model"),
        ("MODEL_SERVER_MODEL_URI", "models:/name"),
        ("MODEL_SERVER_POLL_INTERVAL_SECONDS", "0"),
        ("MODEL_SERVER_MAX_INSTANCES", "0"),
        ("MODEL_SERVER_LOG_LEVEL", "LOUD"),
        ("MODEL_SERVER_HTTP_PORT", "http"),
    ],
)
def test_refused(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        ServerSettings()
