"""Gather the decision's signals: registry, data version, live error, drift, history."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from housing.contract import PROFILE_DIR, PROFILE_FILENAME, Profile, load_profile
from housing.drift import FeatureDrift, profile_drift
from housing.policy import Signals
from housing.registry import CHAMPION, DATA_DIGEST_TAG, TEST_R2_TAG
from housing.regression import live_error
from housing.servingdb import RecordStore
from housing.servingdb.retrain import RetrainStore
from training_job.datafile import data_digest
from training_job.settings import TrainingSettings


def _champion(model_name: str) -> tuple[Any, Profile | None]:
    try:
        version = MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None, None
    profile_dir = mlflow.artifacts.download_artifacts(
        f"models:/{model_name}/{version.version}/{PROFILE_DIR}"
    )
    profile = load_profile(Path(profile_dir) / PROFILE_FILENAME)
    return version, profile


def live_r2(records: RecordStore, version: str, window: int) -> tuple[float | None, int]:
    pairs = records.labelled(version, limit=window)
    scores = live_error(pairs)
    return (None if scores is None else scores["r2"]), len(pairs)


def input_drift(
    records: RecordStore, profile: Profile, window: int, alpha: float
) -> dict[str, FeatureDrift]:
    """Drift of the newest `window` validated inputs, judged at family-wise `alpha`."""
    names = profile.names
    rows = [
        [r["inputs"][n] for n in names]
        for r in records.recent(window)
        if r.get("inputs") and 200 <= r["status"] < 300 and all(n in r["inputs"] for n in names)
    ]
    if not rows:
        return {}
    window_rows = np.array(rows, dtype="float64")
    return {d.feature: d for d in profile_drift(profile, window_rows, alpha)}


def gather(
    settings: TrainingSettings,
    model_name: str,
    raw: Path,
    records: RecordStore,
    retrain: RetrainStore,
    drift_alpha: float,
) -> Signals:
    version, profile = _champion(model_name)
    last_run = retrain.last_run_started()
    if version is None or profile is None:
        return Signals(
            now=datetime.now(UTC), data_digest=data_digest(raw), last_retrain_at=last_run
        )
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC)
    latest = MlflowClient().search_model_versions(
        f"name = '{model_name}'", max_results=1, order_by=["creation_timestamp DESC"]
    )
    r2, samples = live_r2(records, str(version.version), settings.live_window)
    return Signals(
        now=datetime.now(UTC),
        data_digest=data_digest(raw),
        champion_version=str(version.version),
        champion_digest=version.tags.get(DATA_DIGEST_TAG),
        latest_digest=latest[0].tags.get(DATA_DIGEST_TAG) if latest else None,
        latest_version=str(latest[0].version) if latest else None,
        champion_test_r2=float(version.tags[TEST_R2_TAG]) if TEST_R2_TAG in version.tags else None,
        live_r2=r2,
        live_samples=samples,
        drift=input_drift(records, profile, settings.drift_window, drift_alpha),
        last_retrain_at=last_run,
        champion_since=max(created, last_run) if last_run else created,
    )
