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
from kserve import ModelServer
from kserve.protocol.rest.server import RESTServer

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
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_kserve_code_we_follow_is_unchanged(name: str) -> None:
    function, digest, ours = PINNED[name]
    source = inspect.getsource(function)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == digest, (
        f"KServe's {name} changed: review {ours} against it, then update the digest"
    )
