"""The drift rule's false alarms and power, measured on the real data with fixed seeds.

Windows of 1,000 inputs are drawn from the held-out test rows (never in the profile's
reference sample, which comes from the training rows) and compared with the profile built by
the pipeline's own code. The table this prints (-s) is the one in docs/retraining.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from housing.contract import FEATURES, Profile
from housing.drift import DEFAULT_ALPHA, profile_drift
from tests.support.pipeline import RAW_DATA
from training_job.features import assign_splits, derive_features, split_buckets
from training_job.params import load_params
from training_job.profile import build_profile
from training_job.validate import read_raw_files

WINDOW = 1000
WINDOWS = 200


@pytest.fixture(scope="module")
def data() -> tuple[Profile, pd.DataFrame]:
    params = load_params(RAW_DATA.parents[2] / "params.yaml").prepare
    raw = read_raw_files([RAW_DATA], "raw", params.min_rows)
    frame = derive_features(raw)
    split = assign_splits(
        split_buckets(raw, params.split_salt), params.test_percent, params.val_percent
    )
    profile = Profile.parse(build_profile(frame[split == "train"], params.profile, "digest"))
    return profile, frame[split == "test"].reset_index(drop=True)


INCOME = np.where(np.asarray(FEATURES) == "MedInc", 1.1, 1.0)

# name: (rows a window is drawn from, factor applied to each feature of a drawn window)
CASES: dict[str, tuple[Callable[[pd.DataFrame], pd.Series], np.ndarray | float]] = {
    "iid": (lambda r: r["MedInc"] > -1, 1.0),
    "MedInc x 1.1": (lambda r: r["MedInc"] > -1, INCOME),
    "southern only (Latitude < 34.5)": (lambda r: r["Latitude"] < 34.5, 1.0),
    # The coast runs north-west: Longitude + Latitude < -83.8 takes San Diego, Los Angeles,
    # the Bay Area and the coast north of it, and leaves the Central Valley and the desert.
    "coastal only": (lambda r: r["Longitude"] + r["Latitude"] < -83.8, 1.0),
    "inland only": (lambda r: r["Longitude"] + r["Latitude"] >= -83.8, 1.0),
    "old houses only (HouseAge >= 30)": (lambda r: r["HouseAge"] >= 30, 1.0),
}


def flagged_share(profile: Profile, test: pd.DataFrame, case: str, seed: int) -> float:
    where, factor = CASES[case]
    pool = test[where(test)][list(FEATURES)].to_numpy(dtype="float64") * factor
    rng = np.random.default_rng(seed)
    flagged = 0
    for _ in range(WINDOWS):
        window = pool[rng.choice(len(pool), size=WINDOW, replace=len(pool) < WINDOW)]
        flagged += any(d.drifted for d in profile_drift(profile, window, DEFAULT_ALPHA))
    return flagged / WINDOWS


@pytest.mark.parametrize(
    ("case", "low", "high"),
    [
        ("iid", 0.0, 0.05),
        ("MedInc x 1.1", 0.9, 1.0),
        ("southern only (Latitude < 34.5)", 1.0, 1.0),
        ("coastal only", 1.0, 1.0),
        ("inland only", 1.0, 1.0),
        ("old houses only (HouseAge >= 30)", 1.0, 1.0),
    ],
)
def test_false_alarms_and_power(
    data: tuple[Profile, pd.DataFrame], case: str, low: float, high: float
) -> None:
    profile, test = data
    share = flagged_share(profile, test, case, seed=list(CASES).index(case))
    print(f"| {case} | {WINDOWS} x {WINDOW} | {share:.1%} |")
    assert low <= share <= high
