"""The model's input contract, read from its own signature and feature profile, and the checks.

Nothing here names a feature: the names, their order and their valid ranges all come from the
model version being served, so a new version with a new contract is validated by its own; the
physical bounds (housing.contract) apply to the features the version takes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from housing.contract import (
    NON_NEGATIVE_FEATURES,
    NOT_ABOVE,
    POSITIVE_FEATURES,
    Profile,
    physical_violations,
)
from model_server.errors import InvalidInstancesError, Problem

# Signature input types the server can feed as a float64 matrix.
NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
# Up to this many rows the all-valid test runs in Python (numpy's per-call cost dominates).
SMALL_MATRIX = 8
# JSON numbers decode to these; bool is a subclass of int and is refused on purpose.
NUMBER_TYPES: frozenset[type] = frozenset({float, int})


class ContractError(ValueError):
    """The model's signature and profile disagree or cannot be served."""


@dataclass(frozen=True)
class FeatureSchema:
    """Ordered feature names and the closed interval of valid values of each."""

    names: tuple[str, ...]
    types: tuple[str, ...]  # the signature's types (MLflow names: double, long, ...)
    valid_min: np.ndarray
    valid_max: np.ndarray

    @property
    def width(self) -> int:
        return len(self.names)

    @classmethod
    def from_contract(cls, inputs: Sequence[tuple[str, str]], profile: Profile) -> FeatureSchema:
        """From the signature's (name, type) inputs and the feature profile's ranges."""
        names = tuple(name for name, _ in inputs)
        if not names or len(set(names)) != len(names):
            raise ContractError(f"signature inputs must be named and distinct: {names}")
        odd = [f"{name}: {kind}" for name, kind in inputs if kind not in NUMERIC_TYPES]
        if odd:
            raise ContractError(f"non-numeric signature inputs: {', '.join(odd)}")
        features = {f.name: f for f in profile.features}
        if tuple(features) != names:
            raise ContractError(
                f"feature profile {tuple(features)} does not match signature {names}"
            )
        low = np.array([features[n].valid_min for n in names])
        high = np.array([features[n].valid_max for n in names])
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (low <= high).all()):
            raise ContractError("feature profile has an empty or infinite valid range")
        return cls(names, tuple(kind for _, kind in inputs), low, high)

    @cached_property
    def _accept(self) -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[float, float]]]:
        """The lowest value each feature may take, the physical bounds folded into the
        profile's (> 0 is >= the smallest positive double); the column pairs of NOT_ABOVE;
        the (floor, valid_max) of each feature as Python floats: what `check` needs to accept
        a valid matrix at once."""
        floor = self.valid_min.copy()
        for i, name in enumerate(self.names):
            if name in POSITIVE_FEATURES:
                floor[i] = max(floor[i], np.nextafter(0.0, 1.0))
            elif name in NON_NEGATIVE_FEATURES:
                floor[i] = max(floor[i], 0.0)
        column = {name: i for i, name in enumerate(self.names)}
        pairs = [(column[a], column[b]) for a, b in NOT_ABOVE if a in column and b in column]
        return floor, pairs, list(zip(floor.tolist(), self.valid_max.tolist(), strict=True))

    def _valid(self, x: np.ndarray) -> bool:
        """Every value within its floor and valid_max and every pair in order (NaN compares
        False, so it is not valid): a few rows in Python (~1 us a row), more in numpy."""
        floor, pairs, ranges = self._accept
        if len(x) <= SMALL_MATRIX:
            rows = x.tolist()
            return all(
                all(low <= v <= high for v, (low, high) in zip(row, ranges, strict=False))
                and all(row[a] <= row[b] for a, b in pairs)
                for row in rows
            )
        return bool(((x >= floor) & (x <= self.valid_max)).all()) and all(
            (x[:, a] <= x[:, b]).all() for a, b in pairs
        )

    def check(self, x: np.ndarray) -> None:
        """Refuse NaN, infinities, values outside [valid_min, valid_max] and values no block
        group can have (housing.contract's physical bounds), all at once."""
        # The common case, all valid, at once; the itemized search only when something is not.
        if self._valid(x):
            return
        low, high = self.valid_min, self.valid_max
        # NaN compares False both ways, so it counts as outside.
        bad = ~((x >= low) & (x <= high))
        problems = {
            (int(row), self.names[col]): Problem(
                _describe(float(x[row, col]), low[col], high[col]), int(row), self.names[col]
            )
            for row, col in np.argwhere(bad)
        }
        for v in physical_violations(self.names, x):
            problems.setdefault((v.row, v.feature), Problem(v.message, v.row, v.feature))
        if problems:
            column = {name: i for i, name in enumerate(self.names)}
            raise InvalidInstancesError(
                [problems[key] for key in sorted(problems, key=lambda k: (k[0], column[k[1]]))]
            )


def _describe(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "NaN is not a value"
    if math.isinf(value):
        return f"{value} is not a finite number"
    side = f"below valid_min {low:g}" if value < low else f"above valid_max {high:g}"
    return f"{value:g} is {side} (valid range [{low:g}, {high:g}])"


def describe_type(value: object) -> str | None:
    """None for a JSON number; else what is wrong with the value, for the message."""
    kind = type(value)
    if kind is float:
        return None
    if kind is int and isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return "integer is too large for a float"
        return None
    if kind is bool:
        return f"{str(value).lower()} is a boolean, expected a number"
    if value is None:
        return "null is not a number"
    if kind is str:
        return f"{value!r} is a string, expected a number"
    if kind is list:
        return "an array is not a number"
    if kind is dict:
        return "an object is not a number"
    return f"{kind.__name__} is not a number"


def to_matrix(rows: list[list[Any]], width: int) -> np.ndarray | None:
    """Rows of JSON numbers as a float64 matrix, or None if any value is not a number."""
    kinds = {type(v) for row in rows for v in row}
    if not kinds <= NUMBER_TYPES:
        return None
    try:
        return np.array(rows, dtype=np.float64).reshape(len(rows), width)
    except OverflowError:  # an integer beyond float64
        return None
