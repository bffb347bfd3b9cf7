"""ONNX export of housing.estimator's GeoPipeline: GeoFeatures as plain ONNX arithmetic, and
LightGBM through onnxmltools' converter, registered with skl2onnx when first needed."""

from __future__ import annotations

from typing import Any

import numpy as np

from housing.estimator import _LAT, _LON, _LON_SCALE, GeoFeatures, _constants, geographic_names

_registered = False
ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 3


def _geo_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    rows = operator.inputs[0].type.shape[0]
    width = operator.raw_operator.n_features_in_ + len(geographic_names())
    operator.outputs[0].type = FloatTensorType([rows, width])


def _geo_convert(scope: Any, operator: Any, container: Any) -> None:
    """GeoFeatures.transform, node for node (the same float32 operations in the same order)."""
    from onnx import TensorProto

    x = operator.inputs[0].full_name
    cos, sin, city_lat, city_lon = _constants()

    def const(label: str, value: np.ndarray, dtype: int = TensorProto.FLOAT) -> str:
        name = scope.get_unique_variable_name(label)
        container.add_initializer(name, dtype, list(value.shape), value.ravel().tolist())
        return name

    def node(op: str, inputs: list[str], label: str, **attrs: Any) -> str:
        out = scope.get_unique_variable_name(label)
        container.add_node(op, inputs, [out], name=scope.get_unique_operator_name(op), **attrs)
        return out

    lat = node("Gather", [x, const("lat_i", np.array([_LAT]), TensorProto.INT64)], "lat", axis=1)
    lon = node("Gather", [x, const("lon_i", np.array([_LON]), TensorProto.INT64)], "lon", axis=1)
    rotated = node(
        "Add",
        [
            node("Mul", [lon, const("cos", cos)], "lon_cos"),
            node("Mul", [lat, const("sin", sin)], "lat_sin"),
        ],
        "rotated",
    )
    dlat = node("Sub", [lat, const("city_lat", city_lat)], "dlat")
    scaled = node("Mul", [lon, const("lon_scale", np.array([_LON_SCALE]))], "lon_scaled")
    dlon = node("Sub", [scaled, const("city_lon", city_lon)], "dlon")
    squared = node(
        "Add",
        [node("Mul", [dlat, dlat], "dlat2"), node("Mul", [dlon, dlon], "dlon2")],
        "squared",
    )
    distance = node("Sqrt", [squared], "distance")
    container.add_node(
        "Concat",
        [x, rotated, distance],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("Concat"),
        axis=1,
    )


def _register() -> None:
    global _registered
    if _registered:
        return
    from lightgbm import LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
        options={"split": None},
    )
    update_registered_converter(GeoFeatures, "HousingGeoFeatures", _geo_shape, _geo_convert)
    _registered = True


def convert(model: Any, x: Any, name: str | None = None, target_opset: Any = None) -> Any:
    """The ONNX graph of a fitted GeoPipeline, for float32 input shaped like `x`."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.pipeline import Pipeline

    _register()
    # onnxmltools' LightGBM converter writes ai.onnx.ml TreeEnsembleRegressor of opset 3 and
    # refuses a newer one, which skl2onnx picks when the caller names only the main domain.
    opsets = dict(target_opset) if isinstance(target_opset, dict) else {"": target_opset}
    opsets = {k: v for k, v in opsets.items() if v is not None}
    opsets.setdefault(ML_DOMAIN, ML_OPSET)
    width = len(model.feature_names_in_) if hasattr(model, "feature_names_in_") else 8
    if x is not None:
        width = np.asarray(x).shape[1]
    # A plain Pipeline of the same fitted steps: skl2onnx parses Pipelines, not subclasses.
    return convert_sklearn(
        Pipeline(model.steps),
        initial_types=[("X", FloatTensorType([None, width]))],
        target_opset=opsets,
        name=name or "california-housing",
    )
