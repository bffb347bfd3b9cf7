"""The geographic LightGBM model: its features, and its ONNX graph that the server verifies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMRegressor

from housing.contract import FEATURES
from housing.estimator import GeoFeatures, float32_splits, geo_boosting, geographic_names
from model_server.backends import OnnxPredictor, compile_predictor, verification_sample


@pytest.fixture(scope="module")
def rows() -> tuple[pd.DataFrame, np.ndarray]:
    """California-like rows on a coarse coordinate grid: repeated coordinates, as in the data,
    which is what put LightGBM's thresholds between adjacent float32 values."""
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame(
        {
            "MedInc": rng.uniform(0.5, 15, n),
            "HouseAge": rng.integers(1, 53, n).astype(float),
            "AveRooms": rng.uniform(2, 8, n),
            "AveBedrms": rng.uniform(0.8, 1.5, n),
            "Population": rng.uniform(100, 5000, n),
            "AveOccup": rng.uniform(1.5, 5, n),
            "Latitude": np.round(rng.uniform(32.5, 42, n), 2),
            "Longitude": np.round(rng.uniform(-124.3, -114.3, n), 2),
        }
    )[list(FEATURES)]
    coast = np.hypot(frame["Latitude"] - 34.05, frame["Longitude"] + 118.24)
    return frame, 0.4 * frame["MedInc"].to_numpy() + 3 / (1 + coast.to_numpy())


def test_the_geographic_features_follow_the_eight(rows: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, _ = rows
    out = GeoFeatures().fit(frame).transform(frame)
    assert out.shape == (len(frame), len(FEATURES) + len(geographic_names()))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, : len(FEATURES)], frame.to_numpy(np.float32))
    # Distance to Los Angeles is 0 at Los Angeles.
    la = pd.DataFrame([[3.0, 20, 5, 1, 1000, 3, 34.05, -118.24]], columns=list(FEATURES))
    names = geographic_names()
    assert GeoFeatures().fit(la).transform(la)[0, 8 + names.index("km_to_los_angeles")] < 1e-6


def test_one_row_transform_is_bit_identical_to_the_batch_transform(
    rows: tuple[pd.DataFrame, np.ndarray],
) -> None:
    # The grid's repeated coordinates and, off the grid, any value in the domain.
    rng = np.random.default_rng(1)
    low = np.array([0.5, 1, 0.8, 0.3, 3, 0.7, 32.5, -124.4])
    high = np.array([15, 52, 140, 35, 35700, 1240, 42, -114.3])
    x = np.vstack([rows[0].to_numpy(), rng.uniform(low, high, size=(5000, len(FEATURES)))])
    features = GeoFeatures().fit(x)
    own = np.array([features.transform_row(row) for row in x.tolist()], dtype=np.float32)
    np.testing.assert_array_equal(own.view(np.uint32), features.transform(x).view(np.uint32))


def test_thresholds_become_float32_values_and_predictions_stay(
    rows: tuple[pd.DataFrame, np.ndarray],
) -> None:
    frame, y = rows
    x = GeoFeatures().fit(frame).transform(frame)
    model = LGBMRegressor(n_estimators=40, num_leaves=31, verbose=-1).fit(x, y)
    before = model.predict(x)
    booster = float32_splits(model.booster_)
    trees = booster.dump_model()["tree_info"]

    def thresholds(node: dict) -> list[float]:
        if "threshold" not in node:
            return []
        own = [node["threshold"]]
        return own + thresholds(node["left_child"]) + thresholds(node["right_child"])

    every = [t for tree in trees for t in thresholds(tree["tree_structure"])]
    assert every and all(float(np.float32(t)) == t for t in every)
    np.testing.assert_array_equal(booster.predict(x), before)


def test_the_server_verifies_and_uses_its_onnx_graph(
    rows: tuple[pd.DataFrame, np.ndarray],
) -> None:
    """What the server's loader does with a version (model_server.backends.compile_predictor):
    convert with skl2onnx, compare with the model on a sample of the valid domain, serve ONNX
    only if it agrees within the tolerance."""
    frame, y = rows
    model = geo_boosting(LGBMRegressor(n_estimators=200, num_leaves=63, verbose=-1))
    model.fit(frame, y)
    x = frame.to_numpy()
    sample = verification_sample(x[:5], x.min(axis=0), x.max(axis=0))
    predictor, refused = compile_predictor(model, sample)
    assert refused is None
    assert isinstance(predictor, OnnxPredictor)
    # Every training row, not only the verification sample: repeated coordinates included.
    assert np.max(np.abs(predictor.predict(x) - model.predict(frame))) <= 1e-4
