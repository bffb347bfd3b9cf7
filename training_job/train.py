"""Step 2 of the pipeline: fit every candidate and log each as an MLflow run."""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
import scipy
import sklearn
import skops
import skops.io
from mlflow.data.pandas_dataset import from_pandas
from mlflow.models import infer_signature

from housing.contract import FEATURES, PROFILE_FILENAME, TARGET
from housing.registry import CANDIDATE_TAG, DATA_DIGEST_TAG, GIT_COMMIT_TAG
from housing.regression import regression_metrics
from training_job.candidates import build
from training_job.io import write_json
from training_job.params import TrainParams
from training_job.prepare import load_prepared
from training_job.settings import TrainingSettings
from training_job.tracking import connect, git_commit
from training_job.tune import tuned_hyperparameters

log = logging.getLogger(__name__)

# Tag on each candidate run: the sha256 of the fitted model file the DVC pipeline keeps, so
# that evaluate and register find the run that holds exactly that model.
MODEL_SHA_TAG = "model_sha256"
# The MLflow URI of the logged model (models:/m-...), which register turns into a version.
MODEL_URI_TAG = "model_uri"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _requirements(model: Any) -> list[str]:
    # Stated, not inferred: MLflow's inference imports the model in a subprocess (seconds).
    stated = [
        f"scikit-learn=={sklearn.__version__}",
        f"numpy=={np.__version__}",
        f"scipy=={scipy.__version__}",
        f"skops=={skops.__version__}",
    ]
    if type(model).__module__ == "housing.estimator":
        # Unpickling it imports skl2onnx (its ONNX export) and LightGBM (its booster).
        stated += [f"{d}=={version(d)}" for d in ("lightgbm", "skl2onnx", "onnxmltools")]
    return stated


AMBIGUOUS_SOURCE = "The specified dataset source can be interpreted in multiple ways"


def _dataset(frame: pd.DataFrame, info: dict, split: str) -> Any:
    # digest = the DVC md5 of the raw file, source = its DVC-tracked path: a run names exactly
    # which data version it was trained on.
    with warnings.catch_warnings():
        # MLflow registers its local-file dataset source twice (for the schemes "" and
        # "file"), so every local path "can be interpreted in multiple ways": the same class
        # either way. Only that message, only here.
        warnings.filterwarnings("ignore", AMBIGUOUS_SOURCE, UserWarning)
        return from_pandas(
            frame,
            source=info["source"],
            targets=TARGET,
            name=f"cal_housing-{split}",
            digest=info["digest"],
        )


def train(
    prepared_dir: Path,
    models_dir: Path,
    metrics_path: Path,
    params: TrainParams,
    settings: TrainingSettings,
    tuned: Path | None = None,
) -> dict[str, dict[str, float]]:
    """Fit each candidate, save it under `models_dir`, log it to MLflow; return val metrics.

    `tuned` is the search's result (training_job.tune): its hyperparameters override the
    params.yaml entry of the candidate it tuned."""
    data = load_prepared(prepared_dir)
    features = list(FEATURES)
    x_train, y_train = data.train[features], data.train[TARGET].to_numpy()
    x_val, y_val = data.val[features], data.val[TARGET].to_numpy()
    profile = prepared_dir / PROFILE_FILENAME

    connect(settings)
    commit = git_commit(settings)
    datasets = {
        split: _dataset(getattr(data, split), data.info, split)
        for split in ("train", "val", "test")
    }
    models_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    total = len(params.candidates)
    for index, (name, configured) in enumerate(params.candidates.items(), start=1):
        searched = tuned_hyperparameters(tuned, name) if tuned is not None else {}
        hyperparameters = {**configured, **searched}
        log.info("[%d/%d] training %s", index, total, name)
        model = build(name, params.seed, hyperparameters, settings.threads)
        started = time.perf_counter()
        model.fit(x_train, y_train)
        fit_seconds = time.perf_counter() - started
        val = regression_metrics(y_val, model.predict(x_val), "val_")
        path = models_dir / f"{name}.joblib"
        joblib.dump(model, path)

        with mlflow.start_run(run_name=name):
            mlflow.set_tags(
                {
                    CANDIDATE_TAG: name,
                    MODEL_SHA_TAG: file_sha256(path),
                    DATA_DIGEST_TAG: data.info["digest"],
                    GIT_COMMIT_TAG: commit,
                    "data_source": data.info["source"],
                }
            )
            mlflow.log_params({"candidate": name, "seed": params.seed, **hyperparameters})
            mlflow.set_tag("tuned", str(bool(searched)).lower())
            mlflow.log_params({"split_salt": data.info["split_salt"]})
            mlflow.log_metrics({**val, "fit_seconds": fit_seconds})
            for split, context in (
                ("train", "training"),
                ("val", "validation"),
                ("test", "testing"),
            ):
                mlflow.log_input(datasets[split], context=context)
            example = x_train.head(5)
            logged = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(example, model.predict(example)),
                input_example=example,
                extra_files=[str(profile)],
                pip_requirements=_requirements(model),
                # We made this file ourselves a moment ago; these are exactly its types.
                skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(model)),
            )
            mlflow.set_tag(MODEL_URI_TAG, logged.model_uri)
        results[name] = val
        log.info(
            "[%d/%d] %s: val R² %.4f, RMSE %.4f (%.1fs)",
            index,
            total,
            name,
            val["val_r2"],
            val["val_rmse"],
            fit_seconds,
        )

    write_json(metrics_path, results)
    return results
