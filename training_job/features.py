"""Derivation of scikit-learn's eight California Housing features, and the fixed split."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from housing.contract import FEATURES, RAW_COLUMNS, RAW_TARGET, TARGET, TARGET_SCALE


def derive_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Return FEATURES + TARGET from a validated raw frame (see data/README.md)."""
    households = raw["households"]
    frame = pd.DataFrame(
        {
            "MedInc": raw["medianIncome"],
            "HouseAge": raw["housingMedianAge"],
            "AveRooms": raw["totalRooms"] / households,
            "AveBedrms": raw["totalBedrooms"] / households,
            "Population": raw["population"],
            "AveOccup": raw["population"] / households,
            "Latitude": raw["latitude"],
            "Longitude": raw["longitude"],
            TARGET: raw[RAW_TARGET] / TARGET_SCALE,
        }
    )
    return frame[[*FEATURES, TARGET]].astype("float64")


def split_buckets(raw: pd.DataFrame, salt: str) -> np.ndarray:
    """A stable bucket 0..99 per row, from a hash of the row's values.

    Hashing the content (not the position) keeps every row in the same split forever: when new
    rows land, old test rows stay test rows, so champion and challenger are always compared on
    data neither of them was trained on.
    """
    values = raw[list(RAW_COLUMNS)].to_numpy(dtype="float64")
    keys = (salt + "|" + ",".join(repr(float(v)) for v in row) for row in values)
    return np.fromiter((zlib.crc32(k.encode()) % 100 for k in keys), dtype=np.int64, count=len(raw))


def assign_splits(buckets: np.ndarray, test_percent: int, val_percent: int) -> np.ndarray:
    """Map buckets to 'test' (lowest test_percent), 'val' (next val_percent) or 'train'."""
    if not (test_percent > 0 and val_percent > 0 and test_percent + val_percent < 100):
        raise ValueError("test_percent and val_percent must be positive and sum below 100")
    return np.where(
        buckets < test_percent,
        "test",
        np.where(buckets < test_percent + val_percent, "val", "train"),
    )
