"""The feature profile: the contract the server validates against and measures drift with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from housing.contract import FEATURES
from tests.support.pipeline import RAW_DATA, REPO
from training_job.features import derive_features
from training_job.params import load_params
from training_job.profile import build_profile
from training_job.validate import read_raw


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return derive_features(read_raw(RAW_DATA, min_rows=1))


def test_profile_shape(frame: pd.DataFrame) -> None:
    params = load_params(REPO / "params.yaml").prepare.profile
    profile = build_profile(frame, params, data_digest="abc")
    assert profile["profile_version"] == 1 and profile["data_digest"] == "abc"
    assert [f["name"] for f in profile["features"]] == list(FEATURES)
    for feature in profile["features"]:
        hist = feature["histogram"]
        assert len(hist["proportions"]) == len(hist["edges"]) + 1
        assert sum(hist["proportions"]) == pytest.approx(1.0)
        assert len(feature["reference"]) == params.reference_sample_size
        assert feature["valid_min"] <= feature["min"] <= feature["max"] <= feature["valid_max"]
        assert set(feature["quantiles"]) == {str(q) for q in params.quantiles}


def test_valid_domain_rejects_a_latitude_outside_california(frame: pd.DataFrame) -> None:
    params = load_params(REPO / "params.yaml").prepare.profile
    features = {f["name"]: f for f in build_profile(frame, params, "x")["features"]}
    latitude = features["Latitude"]
    assert 31.0 < latitude["valid_min"] < 32.6 and 41.9 < latitude["valid_max"] < 43.0
    # Non-negative features never admit negatives, however wide the margin.
    assert features["Population"]["valid_min"] == 0.0


def test_profile_is_deterministic(frame: pd.DataFrame) -> None:
    params = load_params(REPO / "params.yaml").prepare.profile
    first, second = build_profile(frame, params, "x"), build_profile(frame, params, "x")
    assert first == second
    assert np.isfinite([f["std"] for f in first["features"]]).all()
