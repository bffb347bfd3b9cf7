"""Regression metrics, computed the same way everywhere: training and gating (offline, on the
held-out splits), the server's live-error gauges and the retraining decision (live, on
predictions with feedback).

One edge rule: R² is undefined with fewer than two pairs or when the actual values do not vary
(its denominator is zero; scikit-learn would answer 0.0 or 1.0, which a floor would misread).
Then the live side has no score (None), and the offline side, where it cannot happen with real
splits, raises UndefinedMetricsError.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error


class UndefinedMetricsError(ValueError):
    """R² (and so the set of metrics) is undefined for these values."""


def is_defined(y_true: np.ndarray) -> bool:
    """Whether R² is defined for these actual values: at least two, and not all equal."""
    return len(y_true) >= 2 and not bool(np.all(y_true == y_true[0]))


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, prefix: str = ""
) -> dict[str, float]:
    """{prefix}r2, {prefix}rmse and {prefix}mae; UndefinedMetricsError if R² is undefined."""
    # Checked on a copy: the metrics take y_true as given (a pandas Series sums in another
    # order than an array, which moves the last digit of the committed metrics).
    actual = np.asarray(y_true, dtype=np.float64)
    if not is_defined(actual):
        raise UndefinedMetricsError(
            f"R² is undefined for {len(actual)} actual values "
            + ("that do not vary" if len(actual) >= 2 else "(need two)")
        )
    return {
        f"{prefix}r2": float(r2_score(y_true, y_pred)),
        f"{prefix}rmse": float(root_mean_squared_error(y_true, y_pred)),
        f"{prefix}mae": float(mean_absolute_error(y_true, y_pred)),
    }


def live_error(pairs: Sequence[tuple[float, float]]) -> dict[str, float] | None:
    """r2, rmse and mae of (prediction, actual) pairs; None where R² is undefined."""
    if len(pairs) < 2:
        return None
    predicted, actual = np.asarray(pairs, dtype=np.float64).T
    if not is_defined(actual):
        return None
    return regression_metrics(actual, predicted)
