"""Runtime settings of the model server, built once from the environment at start-up."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# models:/<name>@<alias> or models:/<name>/<version>: the two registry URIs the server follows.
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ChallengerMode = Literal["off", "shadow", "canary"]
LauncherKind = Literal["local", "kubernetes"]


class ServerSettings(BaseSettings):
    """What the predictor serves, where it listens and where it keeps its records.

    Environment variables carry the prefix MODEL_SERVER_ (e.g. MODEL_SERVER_HTTP_PORT), except
    the MLflow tracking URI, which is MLflow's own MLFLOW_TRACKING_URI.
    """

    model_config = SettingsConfigDict(
        env_prefix="MODEL_SERVER_", extra="ignore", protected_namespaces=()
    )

    http_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the REST server (KServe v1, Open Inference Protocol v2, operational API)."""

    grpc_port: int = Field(default=8081, ge=0, le=65535)
    """Port KServe would give its gRPC server. gRPC is disabled (REST only), so nothing binds
    it; the setting exists so that the chart and the server agree on the name."""

    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on its pod address.
    """Address the REST server binds (0.0.0.0 in a container, 127.0.0.1 in tests)."""

    model_name: str = "california-housing"
    """Name of the model on the endpoints (/v1/models/NAME, /v2/models/NAME) and in metrics."""

    model_uri: str = "models:/california-housing@champion"
    """Registry URI to serve: models:/NAME@ALIAS (followed as the alias moves) or
    models:/NAME/VERSION (pinned)."""

    poll_interval_seconds: float = Field(default=30.0, gt=0)
    """Seconds between two looks at the alias; also the longest wait between retries while
    MLflow is unreachable or no model is published yet."""

    database_url: str = "sqlite:///state/serving.db"
    """SQLAlchemy URL of the serving database (prediction log and feedback)."""

    spill_dir: Path | None = Path("state") / "spill"
    """Folder the prediction log spills to when its in-memory buffer is full (database down or
    slower than the traffic) and at shutdown when the database cannot be reached; replayed at
    the next start. Empty: no spill, rows beyond the buffer are dropped (and counted)."""

    log_buffer_rows: int = Field(default=100_000, ge=1)
    """Prediction rows the log keeps in memory while the database is down or slower than the
    traffic; past it the oldest rows go to SPILL_DIR (or are dropped, and counted, without one)."""

    max_instances: int = Field(default=1000, ge=1)
    """Most instances (rows) one request may carry; more is a 413."""

    max_body_bytes: int = Field(default=1_048_576, ge=1)
    """Largest request body accepted, in bytes; more is a 413 before the body is parsed."""

    log_level: LogLevel = "INFO"
    """Level of the server's, KServe's and uvicorn's loggers (WARNING hides access logs)."""

    workers: int = 1
    """Uvicorn worker processes. Only 1 is supported: the loaded model, the alias poller and
    the prediction log writer live in the process. Scale with replicas instead."""

    tracking_uri: str = Field(
        default="sqlite:///state/mlflow.db", validation_alias=AliasChoices("MLFLOW_TRACKING_URI")
    )
    """MLflow tracking URI (MLFLOW_TRACKING_URI, read as is). The default is the training
    job's embedded store under ./state."""

    drift_window: int = Field(default=1000, ge=10, le=100_000)
    """Newest validated inputs per served version kept in memory to compute input drift over
    (a ring buffer filled by the request path)."""

    live_window: int = Field(default=1000, ge=10, le=10_000)
    """Newest predictions with feedback that live error (R², RMSE, MAE) is computed over, per
    version; feedback coverage is counted over this many newest predictions."""

    signals_interval_seconds: float = Field(default=15.0, gt=0)
    """Seconds between two computations of the drift, live-error and retraining gauges (in a
    background thread, never on the request path)."""

    challenger_mode: ChallengerMode = "off"
    """What to do with the version under the challenger alias: off (not loaded), shadow
    (predicts every request beside the champion, answers nothing, logged) or canary (answers
    CANARY_PERCENT of the requests)."""

    challenger_alias: str = Field(default="challenger", pattern=r"^[^/@]+$")
    """Registry alias of the challenger (of the model named in MODEL_URI), polled like the
    champion's when CHALLENGER_MODE is not off."""

    canary_percent: float = Field(default=10.0, ge=0.0, le=100.0)
    """Share of requests (percent) the challenger answers in canary mode; a request carrying a
    key (X-Request-Key header, or v2 parameter request_key) always goes the same way."""

    retrain_launcher: LauncherKind = "local"
    """How POST /retrain/trigger starts a run: local (a detached `python -m training_job
    retrain` process) or kubernetes (a Job created from RETRAIN_CRONJOB)."""

    retrain_workdir: Path = Path()
    """Working directory of a local retraining process (the training job's workspace)."""

    retrain_log_dir: Path = Path("state") / "retrain-logs"
    """Folder of the local retraining processes' output files (relative to RETRAIN_WORKDIR)."""

    retrain_cronjob: str = "california-housing-retrain"
    """Name of the retraining CronJob that the kubernetes launcher creates Jobs from."""

    retrain_namespace: str | None = None
    """Namespace of that CronJob; unset means the pod's own namespace (in a cluster), else the
    kubeconfig context's, else default."""

    @field_validator("spill_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("challenger_mode", "retrain_launcher", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("model_uri")
    @classmethod
    def _registry_uri(cls, value: str) -> str:
        if not MODEL_URI.match(value):
            raise ValueError("expected models:/NAME@ALIAS or models:/NAME/VERSION")
        return value

    @property
    def challenger_uri(self) -> str:
        """models:/NAME@CHALLENGER_ALIAS for the model named in MODEL_URI."""
        match = MODEL_URI.match(self.model_uri)
        assert match is not None  # checked by the validator
        return f"models:/{match['name']}@{self.challenger_alias}"

    @field_validator("workers")
    @classmethod
    def _one_worker(cls, value: int) -> int:
        if value != 1:
            raise ValueError(
                "only 1 worker is supported (model, poller and log writer are per process); "
                "scale with replicas"
            )
        return value
