"""The ONNX backend: compiled, verified against sklearn, refused when it is not faithful."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.tree import DecisionTreeRegressor

from model_server.backends import (
    ONNX_TOLERANCE,
    OnnxPredictor,
    SklearnPredictor,
    compile_predictor,
    verification_sample,
)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, size=(400, 8))
    return x, x[:, 0] * 0.5 + np.sin(x[:, 1]) + rng.normal(0, 0.1, 400)


@pytest.mark.parametrize(
    "model",
    [HistGradientBoostingRegressor(max_iter=30), DecisionTreeRegressor(max_depth=8)],
    ids=["hist_gradient_boosting", "decision_tree"],
)
def test_onnx_is_used_when_it_matches(model: object, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    model.fit(x, y)  # type: ignore[attr-defined]
    sample = verification_sample(x[:5], x.min(axis=0), x.max(axis=0))
    predictor, refused = compile_predictor(model, sample)
    assert refused is None
    assert isinstance(predictor, OnnxPredictor) and predictor.backend == "onnxruntime"
    expected = model.predict(x)  # type: ignore[attr-defined]
    assert np.max(np.abs(predictor.predict(x) - expected)) <= ONNX_TOLERANCE
    assert predictor.predict(x[:1]).shape == (1,)


def test_falls_back_when_onnx_differs(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    model = DecisionTreeRegressor(max_depth=3).fit(x, y)
    predictor, refused = compile_predictor(model, x[:50], tolerance=-1.0)
    assert isinstance(predictor, SklearnPredictor) and predictor.backend == "sklearn"
    assert refused is not None and "differs" in refused
    np.testing.assert_array_equal(predictor.predict(x), model.predict(x))


class Unconvertible(RegressorMixin, BaseEstimator):
    """An estimator skl2onnx knows nothing about."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Unconvertible:
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.mean_)


def test_falls_back_when_conversion_fails(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    predictor, refused = compile_predictor(Unconvertible().fit(x, y), x[:10])
    assert predictor.backend == "sklearn"
    assert refused is not None and "conversion failed" in refused


def test_sample_covers_example_and_domain_edges() -> None:
    low, high = np.zeros(3), np.array([1.0, 2.0, 3.0])
    sample = verification_sample(np.ones((5, 3)), low, high)
    assert (sample >= low).all() and (sample <= high).all()
    np.testing.assert_array_equal(sample[-2], low)
    np.testing.assert_array_equal(sample[-1], high)
    np.testing.assert_array_equal(sample, verification_sample(np.ones((5, 3)), low, high))
