"""The geographic model: coordinates turned into features a tree can split on, then boosting.

A house's price depends on where it is far more than on any one coordinate: rotated axes
(a tree splits on one feature at a time, so a diagonal coast or valley costs it many splits
on latitude and longitude alone) and distances to the big cities. Both come from the
coordinates in each request; nothing is learned from the target, so nothing can leak.

Lives here, not in training_job, because the server loads (unpickles) the fitted model and
converts it to ONNX: the class must be importable in both images. Its ONNX export is its own
`to_onnx` (skl2onnx's `to_onnx` hands over to a model that is an OnnxOperatorMixin), so the
server's loader converts it like any scikit-learn model and verifies it the same way.

Exactness: the features are computed in float32 with one IEEE operation per step, here with
numpy and in the graph with onnxruntime, so both sides give the boosted trees bit-identical
inputs (a derived feature a few ulps apart would land on the other side of a split now and
then, and move a prediction by a whole leaf).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from skl2onnx.algebra.onnx_operator_mixin import OnnxOperatorMixin
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from housing.contract import FEATURES

# Angles (degrees) of the rotated coordinate axes: lon*cos(a) + lat*sin(a).
ROTATIONS: tuple[float, ...] = (15.0, 30.0, 45.0, 60.0, 75.0)
# The five largest cities of 1990 California (latitude, longitude).
CITIES: dict[str, tuple[float, float]] = {
    "los_angeles": (34.05, -118.24),
    "san_francisco": (37.77, -122.42),
    "san_diego": (32.72, -117.16),
    "san_jose": (37.34, -121.89),
    "sacramento": (38.58, -121.49),
}
# A degree of longitude is shorter than one of latitude by cos(latitude): at California's
# middle latitude, 37 degrees.
_LON_SCALE = np.float32(np.cos(np.deg2rad(37.0)))
_LAT, _LON = FEATURES.index("Latitude"), FEATURES.index("Longitude")


def geographic_names() -> list[str]:
    """Names of the derived columns, in the order GeoFeatures appends them."""
    return [f"rotated_{a:g}" for a in ROTATIONS] + [f"km_to_{c}" for c in CITIES]


@cache
def _constants() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rotations' cosines and sines and the cities' scaled coordinates, as float32;
    computed once (4 us a call, a fifth of a 100-row transform), read-only."""
    angles = np.deg2rad(np.asarray(ROTATIONS))
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    city = np.asarray(list(CITIES.values()), dtype=np.float64)
    city_lat = city[:, 0].astype(np.float32)
    city_lon = (city[:, 1] * float(_LON_SCALE)).astype(np.float32)
    for constant in (cos, sin, city_lat, city_lon):
        constant.setflags(write=False)
    return cos, sin, city_lat, city_lon


@cache
def _row_constants() -> tuple[list[float], list[float], list[float], list[float], float]:
    """_constants() as Python floats (exactly their float32 values), and the longitude scale:
    what transform_row needs, computed once."""
    cos, sin, city_lat, city_lon = _constants()
    return cos.tolist(), sin.tolist(), city_lat.tolist(), city_lon.tolist(), float(_LON_SCALE)


class GeoFeatures(TransformerMixin, BaseEstimator):
    """The eight features (as float32) followed by the rotated axes and the city distances."""

    def fit(self, x: Any, y: Any = None) -> GeoFeatures:
        self.n_features_in_ = len(FEATURES)
        return self

    def transform(self, x: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        x32 = np.asarray(x, dtype=np.float32)
        if x32.ndim != 2 or x32.shape[1] != len(FEATURES):
            raise ValueError(f"expected [rows, {len(FEATURES)}] features, got {x32.shape}")
        cos, sin, city_lat, city_lon = _constants()
        lat, lon = x32[:, _LAT : _LAT + 1], x32[:, _LON : _LON + 1]
        # Mirrored node by node in _geo_graph and in transform_row (one row, without numpy):
        # change all three or none.
        rotated = lon * cos + lat * sin
        dlat = lat - city_lat
        dlon = lon * _LON_SCALE - city_lon
        distance = np.sqrt(dlat * dlat + dlon * dlon)
        return np.hstack([x32, rotated, distance]).astype(np.float32)

    def transform_row(self, row: Sequence[float]) -> list[float]:
        """transform() of one row, without numpy's per-call cost (~10 us of it on one row):
        the values bit for bit, as Python floats (exactly float32 values).

        Python floats are doubles; array('f', ...) rounds each result to float32. One
        operation of float32 operands computed in double and then rounded to float32 is the
        correctly rounded float32 result (+, -, *, sqrt: double has more than 2 x 24 + 2
        bits), so every step below is the same IEEE float32 operation as numpy's. A caller
        that relies on it checks it against transform (model_server/compiled_trees.verify).
        """
        cos, sin, city_lat, city_lon, lon_scale = _row_constants()
        x32 = array("f", row)
        lat, lon = x32[_LAT], x32[_LON]
        # Each array holds one step's results (independent operations), rounded at once.
        step1 = array(
            "f",
            [lon * c for c in cos]
            + [lat * s for s in sin]
            + [lat - c for c in city_lat]
            + [lon * lon_scale],
        )
        dlat, scaled = step1[10:15], step1[15]
        step2 = array(
            "f", [step1[i] + step1[i + 5] for i in range(5)] + [scaled - c for c in city_lon]
        )
        rotated, dlon = step2[:5], step2[5:]
        squares = array("f", [d * d for d in dlat] + [d * d for d in dlon])
        total = array("f", [squares[i] + squares[i + 5] for i in range(5)])
        return [*x32, *rotated, *array("f", [math.sqrt(t) for t in total])]


def geo_boosting(regressor: Any) -> GeoPipeline:
    """GeoFeatures followed by `regressor` (LightGBM), exportable to ONNX."""
    return GeoPipeline([("geo", GeoFeatures()), ("boost", regressor)])


def _float32_threshold(text: str) -> str:
    """The largest float32 not above the double `text`: for float32 x, `x <= t` and
    `x <= that` agree, and the ONNX tree (float32 thresholds) stores it exactly."""
    t = float(text)
    down = np.float32(t)
    if float(down) > t:
        down = np.nextafter(down, np.float32(-np.inf))
    return repr(float(down))


def float32_splits(booster: Any) -> Any:
    """`booster` (a LightGBM Booster) with every threshold moved to a float32 value.

    Predictions on float32 inputs are unchanged. Without it, a threshold that LightGBM put
    between two adjacent float32 values (repeated coordinates make those common) is rounded
    by the ONNX converter onto a data value, which then goes the other way: 766 of 13,361
    training rows moved by up to 0.47 (measured).
    """
    from lightgbm import Booster

    lines = booster.model_to_string().split("\n")
    for i, line in enumerate(lines):
        if line.startswith("threshold="):
            values = line.removeprefix("threshold=").split(" ")
            lines[i] = "threshold=" + " ".join(_float32_threshold(v) for v in values)
    # The header's byte offsets of the trees no longer hold; without them LightGBM reads the
    # trees in sequence.
    lines = [line for line in lines if not line.startswith("tree_sizes=")]
    return Booster(model_str="\n".join(lines))


class GeoPipeline(Pipeline, OnnxOperatorMixin):
    """A Pipeline that exports itself to ONNX (see the module docstring)."""

    def fit(self, X: Any, y: Any = None, **params: Any) -> GeoPipeline:  # noqa: N803
        super().fit(X, y, **params)
        boost = self.steps[-1][1]
        # LGBMRegressor keeps its fitted Booster here (booster_ is a read-only view of it).
        boost._Booster = float32_splits(boost.booster_)
        return self

    def to_onnx(
        self,
        X: Any = None,  # noqa: N803 (skl2onnx's name)
        name: str | None = None,
        target_opset: Any = None,
        **_: Any,
    ) -> Any:
        from housing.onnx_export import convert

        return convert(self, X, name=name, target_opset=target_opset)
