"""The data's contract: raw columns, derived features, their order and physical limits.

This is the only place the project spells out the features. Everything downstream (the
model signature, the feature profile the server validates against) is derived from it.
The feature profile itself is built by training_job.profile and read by model_server.loader
and training_job.signals; its name, place and version live here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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

# Physical bounds of the features, from what each means (not from the data's range): the
# pipeline checks the derived features against them (training_job.validate) and the server
# every request (model_server.validation), beside the profile's data-derived valid range.
# Strictly positive: a block group has people, so rooms and occupants per household and its
# population are above 0 (AveOccup 0 was accepted while only the profile's range applied).
POSITIVE_FEATURES: frozenset[str] = frozenset({"AveRooms", "Population", "AveOccup"})
# Derived features that cannot be negative; the profile's valid domain is clamped at 0.
NON_NEGATIVE_FEATURES: frozenset[str] = frozenset(
    {"MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup"}
)
# (smaller, larger): the first never exceeds the second, where both are given. Bedrooms are
# rooms.
NOT_ABOVE: tuple[tuple[str, str], ...] = (("AveBedrms", "AveRooms"),)


@dataclass(frozen=True)
class Violation:
    """One value that no block group can have."""

    row: int
    feature: str
    message: str


def physical_violations(names: Sequence[str], x: np.ndarray) -> list[Violation]:
    """Values of `x` ([rows, len(names)], columns named by `names`) that break the physical
    bounds, in row order; features the model does not take are not checked. NaN breaks none
    here (the range checks refuse it)."""
    column = {name: i for i, name in enumerate(names)}
    found: list[Violation] = []
    for name in sorted(NON_NEGATIVE_FEATURES | POSITIVE_FEATURES):
        if name not in column:
            continue
        values = x[:, column[name]]
        positive = name in POSITIVE_FEATURES
        bad = values <= 0 if positive else values < 0
        need = "> 0" if positive else ">= 0"
        found += [
            Violation(int(row), name, f"{values[row]:g} is impossible: {name} must be {need}")
            for row in np.flatnonzero(bad)
        ]
    # A pair is compared where neither value broke its own bound (that one says enough).
    broken = {(v.row, v.feature) for v in found}
    for smaller, larger in NOT_ABOVE:
        if smaller in column and larger in column:
            low, high = x[:, column[smaller]], x[:, column[larger]]
            found += [
                Violation(
                    int(row),
                    smaller,
                    f"{low[row]:g} is above {larger} {high[row]:g}: "
                    f"{smaller} cannot exceed {larger}",
                )
                for row in np.flatnonzero(low > high)
                if (row, smaller) not in broken and (row, larger) not in broken
            ]
    return sorted(found, key=lambda v: (v.row, names.index(v.feature)))


# The feature profile (layout: docs/model-contract.md). Bump PROFILE_VERSION on any change a
# reader of an older profile would misread; readers refuse any other version.
PROFILE_VERSION = 1
PROFILE_FILENAME = "feature_profile.json"
# Where it sits inside a logged model: MLflow keeps a model's extra_files in this folder.
PROFILE_DIR = "extra_files"
PROFILE_PATH = Path(PROFILE_DIR) / PROFILE_FILENAME


class ProfileError(ValueError):
    """A feature profile this code cannot read (another profile_version, not an object, a
    field missing or of the wrong type)."""


class _Frozen(BaseModel):
    # Unknown keys are refused: a field this code does not know is a layout it would misread,
    # which is what PROFILE_VERSION is for.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Histogram(_Frozen):
    """Equal-frequency bins of the training data: [-inf, e0), [e0, e1), ..., [e_last, inf]."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]


class ColumnProfile(_Frozen):
    """One column of the training split (a feature, or the target)."""

    name: str
    min: float
    max: float
    mean: float
    std: float
    quantiles: dict[str, float]
    histogram: Histogram
    reference: tuple[float, ...] = Field(min_length=1)
    """A seeded sample of the training values: the two-sample KS test's reference."""


class FeatureProfile(ColumnProfile):
    """A feature: its statistics and the range the server accepts."""

    dtype: Literal["double"]
    valid_min: float
    valid_max: float


class Profile(_Frozen):
    """The feature profile, typed (layout: docs/model-contract.md)."""

    profile_version: Literal[1]
    data_digest: str
    rows: int = Field(ge=1)
    features: tuple[FeatureProfile, ...] = Field(min_length=1)
    target: ColumnProfile

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @classmethod
    def parse(cls, data: Any) -> Profile:
        """`data` (the decoded JSON) as a Profile; ProfileError says what is wrong."""
        check_profile(data)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ProfileError(f"feature profile: {problems}") from None


def check_profile(profile: Any) -> dict[str, Any]:
    """`profile` if it is a profile of PROFILE_VERSION, else ProfileError."""
    if not isinstance(profile, dict):
        raise ProfileError(f"the feature profile is a {type(profile).__name__}, not an object")
    version = profile.get("profile_version")
    if version != PROFILE_VERSION:
        raise ProfileError(
            f"feature profile version {version!r}; this code reads version {PROFILE_VERSION}"
        )
    return profile


def load_profile(path: Path) -> Profile:
    """The profile in the JSON file at `path`, typed and checked."""
    return Profile.parse(json.loads(path.read_text(encoding="utf-8")))
