"""Runtime settings of the training job, built once from the environment at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from housing.logformat import LogFormat, parse_log_format
from housing.policy import DEFAULT_WINDOW, DriftWindow, LiveWindow

LOG_FORMAT_ENV = "TRAINING_JOB_LOG_FORMAT"


class TrainingSettings(BaseSettings):
    """Where the job keeps its state and which MLflow it talks to.

    Environment variables carry the prefix TRAINING_ (e.g. TRAINING_STATE_DIR), except the
    MLflow tracking URI, which is MLflow's own MLFLOW_TRACKING_URI.
    """

    model_config = SettingsConfigDict(env_prefix="TRAINING_", extra="ignore")

    state_dir: Path = Path("state")
    """Folder for everything local and mutable: the embedded MLflow store, run bookkeeping."""

    experiment: str = "california-housing"
    """MLflow experiment that holds the candidate runs."""

    tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI")
    )
    """MLflow tracking URI; unset means the embedded SQLite store under `state_dir`."""

    threads: int = Field(default=1, ge=1)
    """OpenMP/BLAS threads for fitting and scoring. One by default: on a small node shared with
    other pods, OpenMP threads that spin-wait for a busy core slow a fit down by 10x or more."""

    serving_database_url: str | None = None
    """The serving database (prediction log, feedback, retraining policy, decisions and lease);
    unset means the embedded SQLite file the server uses by default, state/serving.db."""

    landing_url: str | None = None
    """Where new data lands: a local folder (default state/landing) or a URL DVC reads
    (s3://bucket/prefix). Each new file is imported with `dvc import-url`."""

    workspace: Path = Path()
    """The DVC workspace (dvc.yaml, params.yaml, data/raw). A Job points it at a writable
    volume: the project's pipeline files are copied there and the raw data pulled."""

    dvc_remote: str | None = None
    """DVC remote URL for the raw data (a PVC path, s3://bucket/prefix with AWS_* credentials
    from a Secret); unset means the project's default remote (dvc-remote/ in the repository)."""

    lease_ttl_seconds: float = Field(default=120.0, gt=0)
    """A retrain holds its lease this long between heartbeats: a killed run blocks the next one
    for at most this long."""

    live_window: LiveWindow = DEFAULT_WINDOW
    """Most recent predictions with feedback that live error is computed over."""

    drift_window: DriftWindow = DEFAULT_WINDOW
    """Most recent predictions that input drift is computed over."""

    git_commit: str | None = None
    """Commit of the code, for images built without .git (set at build time)."""

    log_format: LogFormat = Field(default="text", validation_alias=AliasChoices(LOG_FORMAT_ENV))
    """Format of the log lines (TRAINING_JOB_LOG_FORMAT, as the server's
    MODEL_SERVER_LOG_FORMAT): text, or json (one object per line) for a log pipeline."""

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return parse_log_format(value)

    @property
    def embedded(self) -> bool:
        return self.tracking_uri is None

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"

    @property
    def resolved_serving_database_url(self) -> str:
        if self.serving_database_url:
            return self.serving_database_url
        return f"sqlite:///{(self.state_dir / 'serving.db').resolve()}"

    @property
    def resolved_landing_url(self) -> str:
        return self.landing_url or str((self.state_dir / "landing").resolve())

    @property
    def embedded_artifact_root(self) -> str:
        return (self.state_dir / "mlartifacts").resolve().as_uri()
