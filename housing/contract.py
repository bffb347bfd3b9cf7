"""The data's contract: raw columns, derived features, their order and physical limits.

This is the only place the project spells out the features. Everything downstream (the
model signature, the feature profile the server validates against) is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Columns of StatLib's cal_housing.data, in file order (no header in the file).
RAW_COLUMNS: tuple[str, ...] = (
    "longitude",
    "latitude",
    "housingMedianAge",
    "totalRooms",
    "totalBedrooms",
    "population",
    "households",
    "medianIncome",
    "medianHouseValue",
)

RAW_TARGET = "medianHouseValue"

# scikit-learn's eight features, in the order of `fetch_california_housing`.
FEATURES: tuple[str, ...] = (
    "MedInc",
    "HouseAge",
    "AveRooms",
    "AveBedrms",
    "Population",
    "AveOccup",
    "Latitude",
    "Longitude",
)
TARGET = "MedHouseVal"
# MedHouseVal is in units of 100,000 dollars.
TARGET_SCALE = 100_000.0


@dataclass(frozen=True)
class RawRange:
    """Physically possible values of a raw column (inclusive); None = unbounded."""

    low: float | None
    high: float | None
    # Zero is impossible (e.g. a block group with zero households).
    positive: bool = False


# Limits of what the 1990 census can contain, not of what this file happens to contain:
# a value outside them is an error in the data, not a rare observation.
RAW_RANGES: dict[str, RawRange] = {
    "longitude": RawRange(-125.0, -114.0),
    "latitude": RawRange(32.0, 42.5),
    "housingMedianAge": RawRange(0.0, 100.0, positive=True),
    "totalRooms": RawRange(0.0, None, positive=True),
    "totalBedrooms": RawRange(0.0, None),
    "population": RawRange(0.0, None, positive=True),
    "households": RawRange(0.0, None, positive=True),
    "medianIncome": RawRange(0.0, 50.0, positive=True),
    "medianHouseValue": RawRange(0.0, 1_000_000.0, positive=True),
}

# Derived features that cannot be negative; the profile's valid domain is clamped at 0.
NON_NEGATIVE_FEATURES: frozenset[str] = frozenset(
    {"MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup"}
)
