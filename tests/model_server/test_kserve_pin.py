"""The parts of KServe that model_server/server.py and openapi.py override or copy, pinned.

KServe has no public hook for them, so the server overrides private methods of RESTServer and
repeats ModelServer.start (with its own RESTServer). If upstream changes any of these, this
test fails: read the new upstream source, carry the change into the override (or drop the
override if a public hook appeared), then update the digest here. pyproject.toml bounds
kserve below the next minor version for the same reason.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import pytest
from kserve import InferRequest, Model, ModelServer
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import RESTServer
from kserve.protocol.rest.v1_endpoints import V1Endpoints
from kserve.protocol.rest.v2_endpoints import V2Endpoints

FAST = "fastpath.FastInference"

# upstream function -> (sha256 of its source, first 16 hex digits; what of ours follows it)
PINNED: dict[str, tuple[Callable[..., Any], str, str]] = {
    "kserve.ModelServer.start": (
        ModelServer.start,
        "efa96502018b04e9",
        "server.PredictorServer.start (copied: registers, starts one RESTServer, serves)",
    ),
    "kserve.ModelServer.register_signal_handler": (
        ModelServer.register_signal_handler,
        "47a1339a5fcf3d26",
        "server.PredictorServer.register_signal_handler (same signals, a handler safe before "
        "the event loop runs)",
    ),
    "kserve.ModelServer._serve": (
        ModelServer._serve,
        "ff3ff3ccb85e49d3",
        "server.PredictorServer._serve (returns at once after an early signal)",
    ),
    "kserve.ModelServer.stop": (
        ModelServer.stop,
        "c87cc006e46d8397",
        "server.PredictorServer._handle_signal (calls it once the event loop runs)",
    ),
    "RESTServer.__init__": (
        RESTServer.__init__,
        "c85b4ca79cab7f7c",
        "server.PredictorRESTServer.__init__ (replaces config.host and the uvicorn server)",
    ),
    "RESTServer._add_middlewares": (
        RESTServer._add_middlewares,
        "eb71860ac9500c56",
        "server.PredictorRESTServer._add_middlewares (drops the timing middleware)",
    ),
    "RESTServer._register_endpoints": (
        RESTServer._register_endpoints,
        "841b714394633cb5",
        "openapi.register_kserve_endpoints (KServe's routes, less those not served)",
    ),
    "RESTServer.create_application": (
        RESTServer.create_application,
        "f821f63b402457eb",
        "server.PredictorRESTServer.create_application (customizes KServe's app after it)",
    ),
    # What the fast path answers in KServe's place, the same way.
    "Model.__call__": (
        Model.__call__,
        "acf019685a2c07de",
        f"{FAST}._call (preprocess, predict, postprocess, each into KServe's histograms)",
    ),
    "V1Endpoints.predict": (
        V1Endpoints.predict,
        "b1da6ffcb904c89d",
        f"{FAST}.__call__ (v1: ORJSONResponse's bytes and headers)",
    ),
    "V2Endpoints.infer": (
        V2Endpoints.infer,
        "57fdb35815a30a11",
        f"{FAST}.__call__ and _v2_body (v2: FastAPI's JSON of InferenceResponse)",
    ),
    "DataPlane.infer": (DataPlane.infer, "c2d45f0682235cdc", f"{FAST}._call"),
    "DataPlane.encode": (
        DataPlane.encode,
        "f8e942ffcbc6abc8",
        f"{FAST}.__call__ (CloudEvents are left to KServe)",
    ),
    "DataPlane.decode_cloudevent": (
        DataPlane.decode_cloudevent,
        "acd56a94851c8ef6",
        "fastpath._v1_request (a structured CloudEvent is left to KServe)",
    ),
    "InferRequest.from_inference_request": (
        InferRequest.from_inference_request,
        "ea0ef57d24c079c8",
        "fastpath._v2_request (the InferRequest built from a plain JSON body)",
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_kserve_code_we_follow_is_unchanged(name: str) -> None:
    function, digest, ours = PINNED[name]
    source = inspect.getsource(function)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == digest, (
        f"KServe's {name} changed: review {ours} against it, then update the digest"
    )
