"""MLflow set-up shared by the steps: tracking URI, experiment, code version."""

from __future__ import annotations

import logging
import subprocess

import mlflow
from mlflow.entities import Experiment

from training_job.settings import TrainingSettings

log = logging.getLogger(__name__)

# MLflow's own tag for the commit, shown in its UI next to every run.


def connect(settings: TrainingSettings) -> Experiment:
    """Point MLflow at the configured store and return the (created if new) experiment."""
    if settings.embedded:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.resolved_tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment)
    if experiment is None:
        # Embedded: artifacts under the state folder. A server picks (and proxies) its own.
        location = settings.embedded_artifact_root if settings.embedded else None
        mlflow.create_experiment(settings.experiment, artifact_location=location)
        experiment = mlflow.get_experiment_by_name(settings.experiment)
        assert experiment is not None
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    return experiment


def git_commit(settings: TrainingSettings) -> str:
    """The commit the code runs from, or the one baked into the image, or 'unknown'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        return sha or settings.git_commit or "unknown"
    except (OSError, subprocess.SubprocessError):
        return settings.git_commit or "unknown"
