"""The candidate table: every candidate fitted on the training rows, scored once on the held-out
test rows, timed (fit, and prediction through the backend the server would use for it).

    python bench/candidates.py [--prepared data/prepared] [--repeats 3]

Uses params.yaml's candidates plus the old HistGradientBoosting champion (max_iter 500, its
last params) and LightGBM with and without the search's result (models/tuned.json), one
thread each (the training job's default, TRAINING_THREADS=1). Run at normal priority on a
quiet machine: the times are the point.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from housing.contract import FEATURES, TARGET  # noqa: E402
from housing.regression import regression_metrics  # noqa: E402
from model_server.backends import compile_predictor, verification_sample  # noqa: E402
from training_job.candidates import build  # noqa: E402
from training_job.params import TUNED, load_params  # noqa: E402
from training_job.prepare import load_prepared  # noqa: E402
from training_job.tune import tuned_hyperparameters  # noqa: E402

OLD_CHAMPION = {
    "max_iter": 500,
    "learning_rate": 0.1,
    "max_leaf_nodes": 63,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, default=REPO / "data/prepared")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for the timings")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    data = load_prepared(args.prepared)
    x_train, y_train = data.train[list(FEATURES)], data.train[TARGET].to_numpy()
    x_test, y_test = data.test[list(FEATURES)], data.test[TARGET].to_numpy()
    x_val, y_val = data.val[list(FEATURES)], data.val[TARGET].to_numpy()
    lgbm = params.train.candidates["lightgbm"]
    rows = [
        ("linear_regression", "linear_regression", {}),
        ("decision_tree", "decision_tree", params.train.candidates["decision_tree"]),
        ("hist_gradient_boosting (old champion)", "hist_gradient_boosting", OLD_CHAMPION),
        ("lightgbm, params.yaml defaults", "lightgbm", lgbm),
        (
            "lightgbm, tuned (models/tuned.json)",
            "lightgbm",
            {**lgbm, **tuned_hyperparameters(REPO / TUNED, "lightgbm")},
        ),
    ]
    profile_min = x_train.min().to_numpy()
    profile_max = x_train.max().to_numpy()
    sample = verification_sample(x_test.to_numpy()[:5], profile_min, profile_max)
    columns = ("val RMSE", "test R²", "test RMSE", "test MAE", "fit s", "predict µs/row")
    print("| candidate | " + " | ".join(columns) + " | backend |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with threadpool_limits(limits=1):
        for label, name, hyper in rows:
            fits = []
            for _ in range(args.repeats):
                model = build(name, params.train.seed, dict(hyper), threads=1)
                started = time.perf_counter()
                model.fit(x_train, y_train)
                fits.append(time.perf_counter() - started)
            val_rmse = regression_metrics(y_val, model.predict(x_val))["rmse"]
            scores = regression_metrics(y_test, model.predict(x_test))
            predictor, refused = compile_predictor(model, sample)
            matrix = x_test.to_numpy()
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                predictor.predict(matrix)
                times.append(time.perf_counter() - started)
            per_row = min(times) / len(matrix) * 1e6
            backend = predictor.backend + (f" ({refused})" if refused else "")
            print(
                f"| {label} | {val_rmse:.4f} | {scores['r2']:.4f} | {scores['rmse']:.4f} "
                f"| {scores['mae']:.4f} | {min(fits):.2f} | {per_row:.2f} | {backend} |",
                flush=True,
            )
    print(f"\n{len(y_test)} test rows predicted in one batch; best of {args.repeats}")


if __name__ == "__main__":
    main()
