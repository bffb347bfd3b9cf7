"""The candidate models. Each is a scikit-learn estimator built from params.yaml."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.base import RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor


def _linear(seed: int, **kw: Any) -> RegressorMixin:
    # The old baseline. Scaling changes nothing for OLS but keeps coefficients comparable.
    return make_pipeline(StandardScaler(), LinearRegression(**kw))


def _tree(seed: int, **kw: Any) -> RegressorMixin:
    return DecisionTreeRegressor(random_state=seed, **kw)


def _hgb(seed: int, **kw: Any) -> RegressorMixin:
    # Early stopping would carve its own validation split at random; the pipeline has a
    # fixed validation split already, so train for a fixed number of iterations.
    return HistGradientBoostingRegressor(random_state=seed, early_stopping=False, **kw)


def _lightgbm(seed: int, threads: int = 1, **kw: Any) -> RegressorMixin:
    from lightgbm import LGBMRegressor

    from housing.estimator import geo_boosting

    # Stated, not left to OpenMP: LightGBM loads its own libgomp after the job set its thread
    # limit (threadpoolctl only limits libraries already loaded), so it took both cores and,
    # on a busy machine, spin-waited: a fit took 15-18 s instead of 1.5-1.9 s (measured at
    # load 17).
    kw.setdefault("n_jobs", threads)
    return geo_boosting(LGBMRegressor(random_state=seed, verbose=-1, **kw))


BUILDERS: dict[str, Callable[..., RegressorMixin]] = {
    "linear_regression": _linear,
    "decision_tree": _tree,
    "hist_gradient_boosting": _hgb,
    # Boosting on the coordinates' geographic features (housing.estimator), tuned by `tune`.
    "lightgbm": _lightgbm,
}


# Candidates whose library runs its own thread pool, told the job's thread count.
_THREADED = frozenset({"lightgbm"})


def build(
    name: str, seed: int, hyperparameters: dict[str, Any], threads: int = 1
) -> RegressorMixin:
    """The estimator called `name` with the given hyperparameters (ValueError names a bad one);
    `threads`: the job's TRAINING_THREADS."""
    if name not in BUILDERS:
        raise ValueError(f"unknown candidate {name!r}; known: {', '.join(sorted(BUILDERS))}")
    extra = {"threads": threads} if name in _THREADED else {}
    try:
        return BUILDERS[name](seed, **extra, **hyperparameters)
    except TypeError as exc:
        raise ValueError(f"candidate {name!r}: bad hyperparameter: {exc}") from None
