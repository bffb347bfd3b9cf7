"""Runtime settings of the model server, built once from the environment at start-up."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from housing.logformat import LogFormat, parse_log_format
from housing.policy import DEFAULT_WINDOW, DriftWindow, LiveWindow
from housing.registry import CHALLENGER, CHAMPION, MODEL_NAME
from model_server.auth import ADMIN_KEYS_ENV, USER_KEYS_ENV, parse_keys

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

    # hide_input_in_errors: a refused value is never echoed (API keys, database passwords).
    model_config = SettingsConfigDict(
        env_prefix="MODEL_SERVER_",
        extra="ignore",
        protected_namespaces=(),
        hide_input_in_errors=True,
    )

    http_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the REST server (KServe v1, Open Inference Protocol v2, operational API)."""

    grpc_port: int = Field(default=8081, ge=0, le=65535)
    """Port KServe would give its gRPC server. gRPC is disabled (REST only), so nothing binds
    it; the setting exists so that the chart and the server agree on the name."""

    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on its pod address.
    """Address the REST server binds (0.0.0.0 in a container, 127.0.0.1 in tests)."""

    model_name: str = MODEL_NAME
    """Name of the model on the endpoints (/v1/models/NAME, /v2/models/NAME) and in metrics."""

    model_uri: str = f"models:/{MODEL_NAME}@{CHAMPION}"
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

    spill_max_bytes: int = Field(default=0, ge=0)
    """Most bytes the spill files may take (0: no limit). Rows that do not fit are dropped and
    counted; set it below the volume's size (the chart: 90% of the spill emptyDir's sizeLimit,
    which Kubernetes enforces by evicting the pod, spilled rows and all)."""

    log_buffer_rows: int = Field(default=100_000, ge=1)
    """Prediction rows the log keeps in memory while the database is down or slower than the
    traffic; past it the oldest rows go to SPILL_DIR (or are dropped, and counted, without one)."""

    compiled_trees: bool = True
    """Serve a LightGBM champion with its trees compiled to machine code (lleaves): compiled
    after the server is ready, in a niced child process, and verified against the model before
    they replace ONNX (/health: backend, compiled_refused). false: ONNX only."""

    compiled_trees_dir: Path = Path("state") / "compiled-trees"
    """Cache of compiled trees, keyed by the model, the compiler and the CPU: a restart, or a
    replica sharing the folder, loads the object file (instantly) instead of compiling again
    (~20 s a champion). A chart can mount an emptyDir (or a shared volume) here."""

    max_instances: int = Field(default=1000, ge=1)
    """Most instances (rows) one request may carry; more is a 413."""

    max_body_bytes: int = Field(default=1_048_576, ge=1)
    """Largest request body accepted, in bytes; more is a 413 before the body is parsed."""

    log_level: LogLevel = "INFO"
    """Level of the server's, KServe's and uvicorn's loggers (WARNING hides access logs)."""

    log_format: LogFormat = "text"
    """Format of the log lines: text, or json (one object per line with time, level, logger,
    message, and model_version and request_id for the lines of a request) for a log pipeline."""

    access_log: bool = False
    """One uvicorn access-log line per request (at INFO). Off by default: every inference
    request is already in the prediction log and the request metrics, and the line costs
    ~20-60 us of the event loop per request."""

    workers: int = 1
    """Uvicorn worker processes. Only 1 is supported: the loaded model, the alias poller and
    the prediction log writer live in the process. Scale with replicas instead."""

    tracking_uri: str = Field(
        default="sqlite:///state/mlflow.db", validation_alias=AliasChoices("MLFLOW_TRACKING_URI")
    )
    """MLflow tracking URI (MLFLOW_TRACKING_URI, read as is). The default is the training
    job's embedded store under ./state."""

    drift_window: DriftWindow = DEFAULT_WINDOW
    """Newest validated inputs per served version kept in memory to compute input drift over
    (a ring buffer filled by the request path)."""

    live_window: LiveWindow = DEFAULT_WINDOW
    """Newest predictions with feedback that live error (R², RMSE, MAE) is computed over, per
    version; feedback coverage is counted over this many newest predictions."""

    signals_interval_seconds: float = Field(default=15.0, gt=0)
    """Seconds between two computations of the drift, live-error and retraining gauges (in a
    background thread, never on the request path)."""

    challenger_mode: ChallengerMode = "off"
    """What to do with the version under the challenger alias: off (not loaded), shadow
    (predicts every request beside the champion, answers nothing, logged) or canary (answers
    CANARY_PERCENT of the requests)."""

    challenger_alias: str = Field(default=CHALLENGER, pattern=r"^[^/@]+$")
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

    user_key_digests: Annotated[tuple[bytes, ...], NoDecode] = Field(
        default=(), repr=False, exclude=True, validation_alias=AliasChoices(USER_KEYS_ENV)
    )
    """User API keys (MODEL_SERVER_USER_API_KEYS): prediction and feedback routes. Separated by
    commas (or whitespace), each at least 16 visible ASCII characters; held as SHA-256 digests
    only. With no user and no admin key configured, every route is open (docs/security.md)."""

    user_api_keys_file: Path | None = None
    """A file of more user keys, same format (one per line is fine): a mounted Kubernetes
    Secret. Read once at start-up; named but missing, unreadable or empty is an error."""

    admin_key_digests: Annotated[tuple[bytes, ...], NoDecode] = Field(
        default=(), repr=False, exclude=True, validation_alias=AliasChoices(ADMIN_KEYS_ENV)
    )
    """Admin API keys (MODEL_SERVER_ADMIN_API_KEYS): retraining, the raw prediction log, and
    every route a user key may use. Same format as the user keys."""

    admin_api_keys_file: Path | None = None
    """A file of more admin keys, like USER_API_KEYS_FILE."""

    rate_limit_per_second: float = Field(default=0.0, ge=0.0)
    """Requests per second allowed to each API key (to each client address when no key is
    configured) on every route that is not open; 0 turns rate limiting off. In memory: per
    replica."""

    rate_limit_burst: int = Field(default=20, ge=1)
    """Requests a key (or address) may send at once above the rate (the token bucket's size)."""

    @field_validator("user_key_digests", "admin_key_digests", mode="before")
    @classmethod
    def _digests(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        source = USER_KEYS_ENV if info.field_name == "user_key_digests" else ADMIN_KEYS_ENV
        return parse_keys(value, source)

    @model_validator(mode="after")
    def _key_files(self) -> ServerSettings:
        for env, path in (
            (USER_KEYS_ENV, self.user_api_keys_file),
            (ADMIN_KEYS_ENV, self.admin_api_keys_file),
        ):
            if path is None:
                continue
            source = f"{env}_FILE"
            digests = parse_keys(read_key_file(path, source), source)
            if not digests:
                raise ValueError(f"{source}: {path} holds no key")
            if env == USER_KEYS_ENV:
                self.user_key_digests = tuple(dict.fromkeys(self.user_key_digests + digests))
            else:
                self.admin_key_digests = tuple(dict.fromkeys(self.admin_key_digests + digests))
        return self

    @field_validator("spill_dir", "user_api_keys_file", "admin_api_keys_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return parse_log_format(value)

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


def read_key_file(path: Path, source: str) -> str:
    """The text of a key file; ValueError names the file and the problem, never its content."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{source}: cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{source}: {path} is not ASCII text") from None
