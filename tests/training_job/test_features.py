"""Feature derivation and the content-hash split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from housing.contract import FEATURES, RAW_COLUMNS, TARGET
from tests.support.pipeline import RAW_DATA
from training_job.features import assign_splits, derive_features, split_buckets
from training_job.validate import read_raw


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return read_raw(RAW_DATA, min_rows=1)


def test_derived_features_follow_scikit_learns_definitions(raw: pd.DataFrame) -> None:
    frame = derive_features(raw)
    assert list(frame.columns) == [*FEATURES, TARGET]
    first = raw.iloc[0]
    expected = {
        "MedInc": first["medianIncome"],
        "HouseAge": first["housingMedianAge"],
        "AveRooms": first["totalRooms"] / first["households"],
        "AveBedrms": first["totalBedrooms"] / first["households"],
        "Population": first["population"],
        "AveOccup": first["population"] / first["households"],
        "Latitude": first["latitude"],
        "Longitude": first["longitude"],
        TARGET: first["medianHouseValue"] / 100_000,
    }
    assert frame.iloc[0].to_dict() == pytest.approx(expected)
    # scikit-learn's published first row of fetch_california_housing.
    assert frame.iloc[0][list(FEATURES)].tolist() == pytest.approx(
        [8.3252, 41.0, 6.984127, 1.02381, 322.0, 2.555556, 37.88, -122.23], rel=1e-5
    )


def test_split_proportions(raw: pd.DataFrame) -> None:
    split = assign_splits(split_buckets(raw, "cal-housing-v1"), 20, 15)
    shares = {name: float(np.mean(split == name)) for name in ("test", "val", "train")}
    assert shares["test"] == pytest.approx(0.20, abs=0.01)
    assert shares["val"] == pytest.approx(0.15, abs=0.01)


def test_split_depends_on_content_only(raw: pd.DataFrame) -> None:
    """New rows landing (or a reordered file) never move an existing row to another split."""
    before = split_buckets(raw.iloc[:5000], "s")
    new_rows = raw.iloc[5000:6000].assign(medianIncome=lambda d: d["medianIncome"] + 0.001)
    grown = pd.concat([new_rows, raw.iloc[:5000].iloc[::-1]], ignore_index=True)
    after = split_buckets(grown, "s")
    assert np.array_equal(after[1000:][::-1], before)


def test_salt_changes_the_split(raw: pd.DataFrame) -> None:
    assert not np.array_equal(
        split_buckets(raw.iloc[:500], "a"), split_buckets(raw.iloc[:500], "b")
    )


def test_bad_split_percentages() -> None:
    with pytest.raises(ValueError, match="sum below 100"):
        assign_splits(np.arange(10), 60, 40)


def test_raw_columns_are_the_files_order() -> None:
    assert RAW_COLUMNS[0] == "longitude" and RAW_COLUMNS[-1] == "medianHouseValue"
