"""Read-only views of the model registry."""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from housing.registry import ALIASES
from training_job.settings import TrainingSettings
from training_job.tracking import connect


def describe(model_name: str, settings: TrainingSettings) -> dict[str, Any]:
    """Aliases of `model_name` with each version's tags (None for a missing alias)."""
    connect(settings)
    client = MlflowClient()
    info: dict[str, Any] = {"tracking_uri": settings.resolved_tracking_uri, "model": model_name}
    for alias in ALIASES:
        try:
            version = client.get_model_version_by_alias(model_name, alias)
        except MlflowException:
            info[alias] = None
            continue
        info[alias] = {"version": version.version, "tags": dict(version.tags)}
    return info
