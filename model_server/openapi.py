"""The server's OpenAPI document (`/openapi.json`), true to what every route answers.

FastAPI documents our own routes from their models (and `responses=`); KServe's routes come with
little: no request body for v1, no error responses but a 422 in FastAPI's shape, every model
name accepted. This module

- registers only the KServe routes this server implements (no explainer, no model repository
  extension: the watcher loads the alias's version; no versioned v2 routes: the served version
  is the alias's), without the `model_version` query parameter KServe's v2 handlers would
  answer 501 to;
- builds the document from the routes and then states, for every operation, the errors it can
  answer with, all in the one error shape (`ErrorBody`), the only model name served, and the
  inference request and response bodies, taken from the served version's own contract
  (feature names and valid ranges) when one is loaded.

The document is rebuilt when the served version changes (its contract may change with it).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from kserve.constants.constants import V1_ROUTE_PREFIX, V2_ROUTE_PREFIX
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import metrics_handler
from kserve.protocol.rest.v1_endpoints import V1Endpoints
from kserve.protocol.rest.v2_datamodels import (
    InferenceRequest,
    InferenceResponse,
    ListModelsResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    ServerLiveResponse,
    ServerMetadataResponse,
    ServerReadyResponse,
)
from kserve.protocol.rest.v2_endpoints import V2Endpoints
from pydantic import BaseModel, Field

from housing.contract import POSITIVE_FEATURES
from model_server.errors import ErrorBody
from model_server.protocol import OUTPUTS, V2_DATATYPES
from model_server.validation import FeatureSchema

ERROR_REF = "#/components/schemas/ErrorBody"
JSON = "application/json"

# Why each status is answered (the description of the response in the document).
ERROR_DESCRIPTIONS = {
    400: "malformed JSON, or a bad value, instance or tensor (the message names the instance "
    "and the feature)",
    404: "no such model, prediction or route",
    409: "a retraining run is already going",
    413: "a body over MODEL_SERVER_MAX_BODY_BYTES, or more than MODEL_SERVER_MAX_INSTANCES "
    "instances",
    422: "a body or parameter that does not fit the schema (the field is named)",
    502: "the retraining run could not be started",
    503: "no model loaded yet, or the serving database is unavailable",
}
# Every POST: the body guard (413, 400 for a bad Content-Length) and the JSON parser (400).
BODY_ERRORS = (400, 413)
MODEL_ERRORS = (404, 503)
INFERENCE_ERRORS = (*BODY_ERRORS, 404, 422, 503)
# Errors of each operation beyond BODY_ERRORS on POST; operations not listed: none.
OPERATION_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("get", "/v1/models/{model_name}"): MODEL_ERRORS,
    ("post", "/v1/models/{model_name}:predict"): INFERENCE_ERRORS,
    ("get", "/v2/health/ready"): (503,),
    ("get", "/v2/models/{model_name}"): MODEL_ERRORS,
    ("get", "/v2/models/{model_name}/ready"): MODEL_ERRORS,
    ("post", "/v2/models/{model_name}/infer"): INFERENCE_ERRORS,
    ("get", "/logs/{limit}"): (422, 503),
    ("get", "/metrics/summary"): (503,),
    ("post", "/feedback"): (404, 422, 503),
    ("get", "/retrain/status"): (503,),
    ("post", "/retrain/trigger"): (409, 422, 502, 503),
    ("post", "/retrain/config"): (422, 503),
    ("get", "/retrain/logs/{limit}"): (422, 503),
}


class V1Response(BaseModel):
    predictions: list[float] = Field(description="one per instance, in units of $100,000")
    prediction_ids: list[str] = Field(description="one per instance, to send feedback for")
    model_name: str
    model_version: str


def register_kserve_endpoints(app: FastAPI, dataplane: DataPlane) -> None:
    """KServe's v1 and v2 routes that this server serves (in place of KServe's
    `RESTServer._register_endpoints`): not the explainer, the model repository extension
    (load/unload: the watcher loads the alias's version) nor the versioned v2 routes (the served
    version is the alias's); the v2 handlers without the `model_version` query parameter that
    KServe answers 501 to. `:predict` comes before `/v1/models/{model_name}`, whose parameter
    matches `NAME:predict` too: a wrong method on `:predict` is told `Allow: POST`. (KServe's
    OpenAI and time-series routes are for models of those kinds; this one is neither.)"""
    v1 = V1Endpoints(dataplane)
    v2 = V2Endpoints(dataplane)

    async def model_metadata(model_name: str) -> ModelMetadataResponse:
        """The served version's inputs (the signature's names, FP64, shape [-1]) and outputs."""
        return await v2.model_metadata(model_name)

    async def model_ready(model_name: str) -> ModelReadyResponse:
        """200 when a version is loaded, 503 before."""
        return await v2.model_ready(model_name)

    async def infer(
        raw_request: Request,
        raw_response: Response,
        model_name: str,
        request_body: InferenceRequest | bytes,
    ) -> InferenceResponse | Response:
        """Predict: one FP32/FP64 tensor [N, 8] in signature order, or one [N] tensor per
        feature, named as in the signature."""
        return await v2.infer(raw_request, raw_response, model_name, request_body)

    root = APIRouter()
    root.add_api_route("/", dataplane.live, methods=["GET"])
    root.add_api_route("/metrics", metrics_handler, methods=["GET"])
    app.include_router(root)

    v1_router = APIRouter(prefix=V1_ROUTE_PREFIX, tags=["V1"])
    v1_router.add_api_route("/models", v1.models, methods=["GET"])
    v1_router.add_api_route(
        "/models/{model_name}:predict", v1.predict, response_model=None, methods=["POST"]
    )
    v1_router.add_api_route("/models/{model_name}", v1.model_ready, methods=["GET"])
    app.include_router(v1_router)

    v2_router = APIRouter(prefix=V2_ROUTE_PREFIX, tags=["V2"])
    for path, endpoint, model in (
        ("", v2.metadata, ServerMetadataResponse),
        ("/health/live", v2.live, ServerLiveResponse),
        ("/health/ready", v2.ready, ServerReadyResponse),
        ("/models", v2.models, ListModelsResponse),
        ("/models/{model_name}", model_metadata, ModelMetadataResponse),
        ("/models/{model_name}/ready", model_ready, ModelReadyResponse),
    ):
        v2_router.add_api_route(path, endpoint, response_model=model, methods=["GET"])
    v2_router.add_api_route(
        "/models/{model_name}/infer", infer, response_model=None, methods=["POST"]
    )
    app.include_router(v2_router)


# -- the document -------------------------------------------------------------------------


def _number(schema: FeatureSchema | None, column: int | None) -> dict[str, Any]:
    if schema is None or column is None:
        return {"type": "number"}
    low = float(schema.valid_min[column])
    number: dict[str, Any] = {"type": "number", "maximum": float(schema.valid_max[column])}
    # The contract's physical bound where it is tighter than the profile's range (0 allowed by
    # the range, refused as impossible): AveBedrms <= AveRooms is beyond JSON Schema.
    if schema.names[column] in POSITIVE_FEATURES and low <= 0:
        number["exclusiveMinimum"] = 0.0
    else:
        number["minimum"] = low
    return number


def v1_request_schema(schema: FeatureSchema | None, max_instances: int) -> dict[str, Any]:
    """`{"instances": [...]}`, each an array in signature order or an object by feature name,
    every value within the feature's valid range."""
    if schema is None:
        row: dict[str, Any] = {"type": "array", "items": {"type": "number"}}
        obj: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "number"}}
    else:
        row = {
            "type": "array",
            "description": f"the values in signature order: {', '.join(schema.names)}",
            "prefixItems": [_number(schema, j) for j in range(schema.width)],
            "items": False,
            "minItems": schema.width,
            "maxItems": schema.width,
        }
        obj = {
            "type": "object",
            "properties": {n: _number(schema, j) for j, n in enumerate(schema.names)},
            "required": list(schema.names),
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_instances,
                "items": {"anyOf": [row, obj]},
            }
        },
    }


def v2_request_schema(schema: FeatureSchema | None, max_instances: int) -> dict[str, Any]:
    """The Open Inference Protocol request as this server reads it. What JSON Schema cannot say:
    a tensor's `shape` must hold as many values as its `data` (flat or nested once); one tensor
    is [N, 8] in signature order, else one [N] tensor per feature, named as in the signature."""
    width = 8 if schema is None else schema.width
    parameters = {
        "type": ["object", "null"],
        "additionalProperties": {"type": ["number", "boolean", "string"]},
    }
    number = {"type": "number"}
    tensor: dict[str, Any] = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2,
                "items": {"type": "integer", "minimum": 0},
            },
            "datatype": {"type": "string", "enum": sorted(V2_DATATYPES)},
            "parameters": parameters,
            "data": {
                "type": "array",
                "maxItems": max_instances * width,
                "items": {"anyOf": [number, {"type": "array", "items": number}]},
            },
        },
    }
    if schema is not None:
        tensor["properties"]["name"]["examples"] = list(schema.names)
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": ["string", "null"]},
            "parameters": parameters,
            "inputs": {"type": "array", "minItems": 1, "maxItems": width, "items": tensor},
            "outputs": {
                "type": ["array", "null"],
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "enum": list(OUTPUTS)},
                        "parameters": parameters,
                    },
                },
            },
        },
    }


def _json(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": dict(schema)}}}


def _error(status: int) -> dict[str, Any]:
    return _json({"$ref": ERROR_REF}, ERROR_DESCRIPTIONS.get(status, "error"))


def build_document(
    app: FastAPI, model_name: str, schema: FeatureSchema | None, max_instances: int
) -> dict[str, Any]:
    doc = get_openapi(
        title="California Housing model server",
        version=app.version,
        description="KServe v1, Open Inference Protocol v2, operations and retraining API. "
        "Every error has the shape of ErrorBody.",
        routes=app.routes,
    )
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorBody, V1Response, InferenceResponse, ModelMetadataResponse):
        _add_component(components, model)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)

    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's shape, not ours: stated below if answered
            errors = set(OPERATION_ERRORS.get((method, path), ()))
            if method == "post":
                errors |= set(BODY_ERRORS)
            for status in sorted(errors):
                stated = responses.setdefault(str(status), _error(status))
                stated.setdefault("content", {JSON: {"schema": {"$ref": ERROR_REF}}})
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "model_name" and parameter.get("in") == "path":
                    parameter["schema"] = {"type": "string", "enum": [model_name]}
                    parameter["description"] = "the served model (another name is a 404)"

    paths = doc["paths"]
    v1 = paths["/v1/models/{model_name}:predict"]["post"]
    v1["requestBody"] = {
        "required": True,
        "content": {JSON: {"schema": v1_request_schema(schema, max_instances)}},
    }
    v1["responses"]["200"] = _json({"$ref": "#/components/schemas/V1Response"}, "predictions")
    v2 = paths["/v2/models/{model_name}/infer"]["post"]
    v2_body = v2_request_schema(schema, max_instances)
    v2["requestBody"] = {"required": True, "content": {JSON: {"schema": v2_body}}}
    v2["responses"]["200"] = _json(
        {"$ref": "#/components/schemas/InferenceResponse"},
        "outputs `predict` (FP64 [N]) and `prediction_id` (BYTES [N])",
    )
    paths["/metrics"]["get"]["responses"]["200"] = {
        "description": "Prometheus text exposition",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    return doc


def _add_component(components: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components[model.__name__] = schema


class OpenAPIDocument:
    """`app.openapi`: the document for the served version, rebuilt when it changes."""

    def __init__(
        self,
        app: FastAPI,
        model_name: str,
        served: Callable[[], FeatureSchema | None],
        max_instances: int,
    ) -> None:
        self._app = app
        self._model_name = model_name
        self._served = served
        self._max_instances = max_instances
        self._lock = threading.Lock()
        self._cached: tuple[FeatureSchema | None, dict[str, Any]] | None = None

    def __call__(self) -> dict[str, Any]:
        schema = self._served()
        with self._lock:
            if self._cached is None or self._cached[0] is not schema:
                doc = build_document(self._app, self._model_name, schema, self._max_instances)
                self._cached = (schema, doc)
            return copy.deepcopy(self._cached[1])


def install(
    app: FastAPI,
    model_name: str,
    served: Callable[[], FeatureSchema | None],
    max_instances: int,
) -> None:
    """Serve the document above at /openapi.json."""
    app.openapi_schema = None
    app.openapi = OpenAPIDocument(app, model_name, served, max_instances)  # type: ignore[method-assign]
