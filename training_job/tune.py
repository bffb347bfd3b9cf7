"""The hyperparameter search: Optuna over one candidate, on the training and validation rows
only (fit on train, score on val); the test rows are never read. Its result, the best
hyperparameters, is a file that `train` merges over the candidate's params.yaml entry, so a
retraining run reuses the last search instead of repeating it (`dvc repro` re-runs the search
when the data or the budget change).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from housing.contract import FEATURES, TARGET
from training_job.candidates import build
from training_job.io import read_json, write_json
from training_job.params import TuneParams

log = logging.getLogger(__name__)


def _suggest(trial: Any, space: dict[str, list[float | int | str]]) -> dict[str, Any]:
    """One point of `space`: [low, high] ints, [low, high] floats, or [low, high, "log"]."""
    point: dict[str, Any] = {}
    for name, bounds in space.items():
        low, high, *scale = bounds
        log = scale == ["log"]
        if isinstance(low, int) and isinstance(high, int):
            point[name] = trial.suggest_int(name, low, high, log=log)
        else:
            point[name] = trial.suggest_float(name, float(low), float(high), log=log)
    return point


def tune(
    prepared_dir: Path,
    out_path: Path,
    params: TuneParams,
    base: dict[str, Any],
    seed: int,
    threads: int = 1,
) -> dict[str, Any]:
    """Search `params.space` around the candidate's `base` hyperparameters; write the best."""
    import optuna

    # Only these two splits are read: the test rows are scored once, by evaluate.
    train, val = (pd.read_parquet(prepared_dir / f"{split}.parquet") for split in ("train", "val"))
    features = list(FEATURES)
    x_train, y_train = train[features], train[TARGET].to_numpy()
    x_val, y_val = val[features], val[TARGET].to_numpy()

    def objective(trial: Any) -> float:
        model = build(params.candidate, seed, {**base, **_suggest(trial, params.space)}, threads)
        model.fit(x_train, y_train)
        return float(np.sqrt(np.mean((model.predict(x_val) - y_val) ** 2)))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=params.seed)
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=params.trials, timeout=params.timeout_seconds)
    result = {
        "candidate": params.candidate,
        "hyperparameters": study.best_params,
        "val_rmse": study.best_value,
        "trials": len(study.trials),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out_path, result)
    log.info(
        "tuned %s: val RMSE %.4f after %d trials (%.0fs): %s",
        params.candidate,
        study.best_value,
        len(study.trials),
        result["seconds"],
        study.best_params,
    )
    return result


def tuned_hyperparameters(path: Path, candidate: str) -> dict[str, Any]:
    """The searched hyperparameters of `candidate` in `path`, or none if it holds another's
    (or does not exist: the candidate then trains with its params.yaml entry alone)."""
    if not path.exists():
        return {}
    tuned = read_json(path)
    return dict(tuned["hyperparameters"]) if tuned.get("candidate") == candidate else {}
