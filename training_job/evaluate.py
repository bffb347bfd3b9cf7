"""Step 3 of the pipeline: score every candidate on the held-out test set, log it to its
MLflow run, and select the candidate to register; then (`report`) draw each one's plots."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import joblib
import mlflow
import numpy as np
from mlflow.entities import Run

from housing.contract import FEATURES, TARGET
from housing.registry import CANDIDATE_TAG
from housing.regression import regression_metrics
from training_job.io import read_json, write_json
from training_job.params import EvaluateParams
from training_job.prepare import load_prepared
from training_job.settings import TrainingSettings
from training_job.tracking import connect
from training_job.train import MODEL_SHA_TAG, file_sha256

log = logging.getLogger(__name__)


class StaleRunsError(RuntimeError):
    """The fitted model files have no matching MLflow run (e.g. a different or wiped store)."""


def find_candidate_run(name: str, model_path: Path) -> Run:
    """The MLflow run that logged exactly the model in `model_path`."""
    sha = file_sha256(model_path)
    runs = mlflow.search_runs(
        filter_string=f"tags.{CANDIDATE_TAG} = '{name}' and tags.{MODEL_SHA_TAG} = '{sha}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
        search_all_experiments=True,
    )
    if not runs:
        raise StaleRunsError(
            f"no MLflow run at {mlflow.get_tracking_uri()} holds {model_path} (sha256 {sha[:12]}); "
            "the models were trained against another store: run `dvc repro --force train`"
        )
    return runs[0]


def _selection_key(metric: str, metrics: dict[str, float]) -> float:
    # Lower is better for errors, higher for R².
    return -metrics[metric] if metric.endswith("r2") else metrics[metric]


def evaluate(
    prepared_dir: Path,
    models_dir: Path,
    train_metrics_path: Path,
    metrics_path: Path,
    params: EvaluateParams,
    settings: TrainingSettings,
) -> dict:
    """Score every candidate on the test split (logged to its run), select the one to register
    by its validation metric, write `metrics_path`. What decides promotion, and nothing else:
    `report` draws the plots afterwards."""
    data = load_prepared(prepared_dir)
    x_test, y_test = data.test[list(FEATURES)], data.test[TARGET].to_numpy()
    val_metrics: dict[str, dict[str, float]] = read_json(train_metrics_path)

    connect(settings)
    report: dict[str, dict[str, float]] = {}
    for name in val_metrics:
        path = models_dir / f"{name}.joblib"
        run = find_candidate_run(name, path)
        test = regression_metrics(y_test, joblib.load(path).predict(x_test), "test_")
        with mlflow.start_run(run_id=run.info.run_id):
            mlflow.log_metrics(test)
        report[name] = {**val_metrics[name], **test}
        log.info(
            "%s: test R² %.4f, RMSE %.4f, MAE %.4f",
            name,
            test["test_r2"],
            test["test_rmse"],
            test["test_mae"],
        )

    selected = _best(val_metrics, params.selection_metric)
    result = {
        "selected": selected,
        "selection_metric": params.selection_metric,
        "candidates": report,
    }
    write_json(metrics_path, result)
    log.info("selected %s by %s", selected, params.selection_metric)
    return result


def report(
    prepared_dir: Path,
    models_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    params: EvaluateParams,
    settings: TrainingSettings,
) -> None:
    """Each candidate's plots (predicted vs actual, residuals, permutation importance) logged
    to its run, and the selected one's written to `plots_dir` for `dvc plots`. Nothing here
    decides promotion, so a retraining run draws them after the alias moved."""
    # Imported here, off the path to the decision (matplotlib and sklearn.inspection).
    from sklearn.inspection import permutation_importance

    from training_job import plots

    data = load_prepared(prepared_dir)
    features = list(FEATURES)
    x_test, y_test = data.test[features], data.test[TARGET].to_numpy()
    sample = data.val.sample(n=min(params.importance_rows, len(data.val)), random_state=0)
    x_val, y_val = sample[features], sample[TARGET].to_numpy()
    selected: str = read_json(metrics_path)["selected"]

    connect(settings)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name in read_json(metrics_path)["candidates"]:
        path = models_dir / f"{name}.joblib"
        model = joblib.load(path)
        run = find_candidate_run(name, path)
        predicted = model.predict(x_test)
        importance = permutation_importance(
            model,
            x_val,
            y_val,
            scoring="r2",
            n_repeats=params.importance_repeats,
            random_state=0,
            n_jobs=1,
        )
        with mlflow.start_run(run_id=run.info.run_id):
            for artifact, fig in (
                ("predicted_vs_actual.png", plots.predicted_vs_actual(y_test, predicted, name)),
                ("residuals.png", plots.residuals(y_test, predicted, name)),
                (
                    "feature_importance.png",
                    plots.feature_importance(
                        features, importance.importances_mean, importance.importances_std, name
                    ),
                ),
            ):
                mlflow.log_figure(fig, f"plots/{artifact}")
                if name == selected:
                    fig.savefig(plots_dir / artifact, dpi=80, metadata={"Software": None})
    _write_plot_data(plots_dir, selected, models_dir, x_test, y_test, params.plot_points)
    log.info("plots of %d candidates logged", len(read_json(metrics_path)["candidates"]))


def _best(val_metrics: dict[str, dict[str, float]], metric: str) -> str:
    return min(val_metrics, key=lambda name: _selection_key(metric, val_metrics[name]))


def _write_plot_data(
    plots_dir: Path,
    selected: str,
    models_dir: Path,
    x_test: object,
    y_test: np.ndarray,
    points: int,
) -> None:
    """A seeded sample of the selected model's test predictions, for `dvc plots show`."""
    model = joblib.load(models_dir / f"{selected}.joblib")
    predicted = model.predict(x_test)
    rows = np.random.default_rng(0).choice(
        len(y_test), size=min(points, len(y_test)), replace=False
    )
    with (plots_dir / "test_predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        for i in sorted(rows.tolist()):
            writer.writerow([f"{y_test[i]:.5f}", f"{predicted[i]:.5f}"])
