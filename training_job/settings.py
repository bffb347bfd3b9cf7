"""Runtime settings of the training job, built once from the environment at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    git_commit: str | None = None
    """Commit of the code, for images built without .git (set at build time)."""

    @property
    def embedded(self) -> bool:
        return self.tracking_uri is None

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"

    @property
    def embedded_artifact_root(self) -> str:
        return (self.state_dir / "mlartifacts").resolve().as_uri()
