"""One edge rule for R², RMSE and MAE, offline and live."""

from __future__ import annotations

import numpy as np
import pytest

from housing.regression import UndefinedMetricsError, live_error, regression_metrics


def test_offline_and_live_agree_where_defined() -> None:
    actual, predicted = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.1, 1.9, 3.2, 3.7])
    offline = regression_metrics(actual, predicted, "test_")
    live = live_error(list(zip(predicted, actual, strict=True)))
    assert live == {k.removeprefix("test_"): v for k, v in offline.items()}
    assert 0.9 < offline["test_r2"] < 1.0


@pytest.mark.parametrize("actual", [[2.0], [2.0, 2.0, 2.0]])
def test_r2_is_undefined_below_two_values_or_when_the_truth_does_not_vary(
    actual: list[float],
) -> None:
    pairs = [(1.0, a) for a in actual]
    assert live_error(pairs) is None
    with pytest.raises(UndefinedMetricsError):
        regression_metrics(np.array(actual), np.ones(len(actual)))
    assert live_error([]) is None
