"""Settings: the environment names the Helm chart relies on, defaults, and refusals."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, ValidationError

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
    "MODEL_SERVER_DRIFT_WINDOW": ("drift_window", 1000, "500", 500),
    "MODEL_SERVER_LIVE_WINDOW": ("live_window", 1000, "200", 200),
    "MODEL_SERVER_SIGNALS_INTERVAL_SECONDS": ("signals_interval_seconds", 15.0, "5", 5.0),
    "MODEL_SERVER_CHALLENGER_MODE": ("challenger_mode", "off", "Shadow", "shadow"),
    "MODEL_SERVER_CHALLENGER_ALIAS": ("challenger_alias", "challenger", "next", "next"),
    "MODEL_SERVER_CANARY_PERCENT": ("canary_percent", 10.0, "25", 25.0),
    "MODEL_SERVER_RETRAIN_LAUNCHER": ("retrain_launcher", "local", "kubernetes", "kubernetes"),
    "MODEL_SERVER_RETRAIN_WORKDIR": ("retrain_workdir", Path(), "/w", Path("/w")),
    "MODEL_SERVER_RETRAIN_LOG_DIR": (
        "retrain_log_dir",
        Path("state/retrain-logs"),
        "/logs",
        Path("/logs"),
    ),
    "MODEL_SERVER_RETRAIN_CRONJOB": (
        "retrain_cronjob",
        "california-housing-retrain",
        "ch-california-housing-retrain",
        "ch-california-housing-retrain",
    ),
    "MODEL_SERVER_RETRAIN_NAMESPACE": ("retrain_namespace", None, "ml", "ml"),
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
        ("MODEL_SERVER_CHALLENGER_MODE", "mirror"),
        ("MODEL_SERVER_CHALLENGER_ALIAS", "a/b"),
        ("MODEL_SERVER_CANARY_PERCENT", "101"),
        ("MODEL_SERVER_RETRAIN_LAUNCHER", "ssh"),
        ("MODEL_SERVER_DRIFT_WINDOW", "1"),
        ("MODEL_SERVER_SIGNALS_INTERVAL_SECONDS", "0"),
    ],
)
def test_refused(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        ServerSettings()


def test_the_challenger_is_an_alias_of_the_served_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SERVER_MODEL_URI", "models:/other/3")
    assert ServerSettings().challenger_uri == "models:/other@challenger"


# -- the documented table ----------------------------------------------------------------------

SERVER_DOC = Path(__file__).resolve().parents[2] / "docs" / "model-server.md"


def documented_settings() -> dict[str, str]:
    """docs/model-server.md's Configuration table: variable -> its default column."""
    section = SERVER_DOC.read_text(encoding="utf-8").split("## Configuration")[1]
    table = [line for line in section.split("\n## ")[0].splitlines() if line.startswith("| `")]
    rows = (line.strip("|").split("|") for line in table)
    return {name.strip().strip("`"): default.strip() for name, default, *_ in rows}


def env_names(field_name: str) -> list[str]:
    field = ServerSettings.model_fields[field_name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"{ServerSettings.model_config.get('env_prefix', '')}{field_name}".upper()]


def shown(value: object) -> str | None:
    """A default as the table writes it (in backquotes), or None where it writes prose."""
    if value is None or value == ():
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_documented_settings_are_the_settings_with_their_defaults() -> None:
    """The table documents every setting, no other, each with the default the code has (the
    docstrings under the fields in model_server/settings.py are the longer truth)."""
    documented = documented_settings()
    expected: dict[str, str | None] = {}
    for name, field in ServerSettings.model_fields.items():
        for env in env_names(name):
            expected[env] = shown(field.default)
        if name.endswith("_file"):  # the keys' files: documented beside their variables
            expected[f"{ServerSettings.model_config.get('env_prefix', '')}{name}".upper()] = None
    assert set(documented) == set(expected)
    for env, default in expected.items():
        if default is not None:
            first = re.match(r"`([^`]*)`", documented[env])
            assert first is not None and first.group(1) == default, (env, documented[env])
