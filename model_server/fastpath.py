"""A lean path for the two inference routes, in front of KServe's FastAPI app.

KServe's routing (FastAPI's request object, dependency solving, the dataplane's decode and
encode, pydantic's model of a v2 body and of its answer) costs ~330 us a request, most of a
single-row request's CPU. This ASGI layer answers the common case itself: a JSON POST to
`/v1/models/{name}:predict` or `/v2/models/{name}/infer` of the served model, with a version
loaded. It runs inside the access and body guards (auth, rate limits, 413, in-flight gauge,
start clock are theirs), calls the model as KServe's `Model.__call__` does (the same
preprocess, predict and postprocess, each timed into KServe's own latency histograms; their
label children looked up once, not three times a request) and writes the bytes KServe would.
The KServe code it follows is pinned by tests/model_server/test_kserve_pin.py. Errors go to
the app's one error handler (same body, status, log record and metrics). Anything else it
hands on unchanged to KServe's app, body included: CloudEvents, the v2 binary extension, a
body KServe's parser would read differently (not plain JSON, unknown keys, odd types),
another model's name, no version loaded yet, the versioned v2 route.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from kserve import InferInput, InferRequest, InferResponse
from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME, get_labels
from kserve.protocol.infer_type import RequestedOutput
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_server.errors import BadRequestError, InvalidInstancesError
from model_server.model import HousingModel
from model_server.protocol import v1_duplicate_keys, v1_json, v2_invalid_text

ErrorResponder = Callable[[Request, Exception], Awaitable[Response]]

_V1 = re.compile(r"^/v1/models/([^/]+):predict$")
_V2 = re.compile(r"^/v2/models/([^/]+)/infer$")
# Headers under which KServe reads a body as something other than plain JSON.
_CLOUDEVENT_BINARY = frozenset({"ce-specversion", "ce-source", "ce-type", "ce-id"})
_V2_BINARY = "inference-header-content-length"
_JSON_TYPES = frozenset({"", "application/json"})
_V2_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_V2_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_V2_OUTPUT_KEYS = frozenset({"name", "parameters"})
_PARAMETER_TYPES = (str, int, float, bool)
_V1_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY  # KServe's ORJSONResponse


class FastInference:
    """Answers plain JSON inference requests for `model`; passes everything else to `app`."""

    def __init__(self, app: ASGIApp, *, model: HousingModel, respond_error: ErrorResponder) -> None:
        self.app = app
        self.model = model
        self.respond_error = respond_error
        labels = get_labels(model.name)
        self._timers = (
            PRE_HIST_TIME.labels(**labels),
            PREDICT_HIST_TIME.labels(**labels),
            POST_HIST_TIME.labels(**labels),
        )

    async def _call(self, payload: Any, headers: dict[str, str]) -> tuple[Any, dict[str, str]]:
        """Model.__call__ for the predict verb, with the histogram children at hand."""
        model = self.model
        pre, predict, post = self._timers
        response_headers: dict[str, str] = {}
        clock = time.perf_counter
        started = clock()
        try:
            job = await model.preprocess(payload, headers)
        finally:
            pre.observe(max(clock() - started, 0))
        job = model.validate(job)
        started = clock()
        try:
            outcome = await model.predict(job, headers, response_headers)
        finally:
            predict.observe(max(clock() - started, 0))
        started = clock()
        try:
            response = await model.postprocess(outcome, headers, response_headers)
        finally:
            post.observe(max(clock() - started, 0))
        return response, response_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        match = _V1.match(path)
        v2 = match is None
        if v2:
            match = _V2.match(path)
        if match is None or match.group(1) != self.model.name or not self.model.ready:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in _JSON_TYPES or not _CLOUDEVENT_BINARY.isdisjoint(headers):
            await self.app(scope, receive, send)
            return
        if v2 and _V2_BINARY in headers:
            await self.app(scope, receive, send)
            return
        body, receive = await _read(receive)
        if body is None:  # the client went away mid-body: KServe's route answers that (499)
            await self.app(scope, receive, send)
            return
        try:
            payload = _v2_request(body, self.model.name) if v2 else _v1_request(body, headers)
            if payload is None:  # KServe's to read
                await self.app(scope, receive, send)
                return
            response, response_headers = await self._call(payload, headers)
            if isinstance(response, InferResponse):
                content = _v2_body(response)
                head = [(b"content-length", str(len(content)).encode()), _JSON_TYPE]
                head += _encoded(response_headers)
            else:
                content = orjson.dumps(response, option=_V1_OPTIONS)
                head = _encoded(response_headers)
                head += [(b"content-length", str(len(content)).encode()), _JSON_TYPE]
        except Exception as exc:  # the app's handler: same answer, log record and metrics
            error = await self.respond_error(Request(scope, receive), exc)
            await error(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": content})


_JSON_TYPE = (b"content-type", b"application/json")


def _encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _read(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole body (the body guard has it in memory; None if the client left before its
    end), and a receive that replays what was received."""
    chunks: list[bytes] = []
    first: Message | None = None
    while True:
        message = await receive()
        if message["type"] != "http.request":
            first = message
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    pending: list[Message] = [
        first if first is not None else {"type": "http.request", "body": body, "more_body": False}
    ]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return (None if first is not None else body), replay


def _v1_request(body: bytes, headers: dict[str, str]) -> Any:
    """PredictorDataPlane.decode's reading of a v1 body; None for a structured CloudEvent."""
    decoded = v1_json(body, headers.get("content-type"))
    repeated = v1_duplicate_keys(body, decoded)
    if repeated:
        raise InvalidInstancesError(repeated)
    if isinstance(decoded, dict) and "specversion" in decoded:
        return None
    return decoded


def _parameters(value: object) -> bool:
    """A v2 parameters object as KServe's model takes it unchanged (no binary outputs)."""
    return value is None or (
        type(value) is dict
        and all(type(v) in _PARAMETER_TYPES for v in value.values())
        and not any(k.startswith("binary_data") for k in value)
    )


def _v2_request(body: bytes, model_name: str) -> InferRequest | None:
    """An InferRequest as KServe builds it from pydantic's model of the body, or None when
    the body is anything but the plain JSON for which that is certain."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(request) is not dict or not request.keys() <= _V2_REQUEST_KEYS:
        return None
    ident, parameters = request.get("id"), request.get("parameters")
    inputs, outputs = request.get("inputs"), request.get("outputs")
    if not (ident is None or type(ident) is str) or not _parameters(parameters):
        return None
    if type(inputs) is not list or not (outputs is None or type(outputs) is list):
        return None
    infer_inputs = []
    for tensor in inputs:
        if type(tensor) is not dict or not tensor.keys() <= _V2_INPUT_KEYS:
            return None
        name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
        data, tensor_parameters = tensor.get("data"), tensor.get("parameters")
        if type(name) is not str or type(datatype) is not str or type(data) is not list:
            return None
        if type(shape) is not list or any(type(d) is not int for d in shape):
            return None
        if not _parameters(tensor_parameters) or datatype == "FP16":
            return None
        infer_inputs.append(InferInput(name, shape, datatype, data, tensor_parameters or {}))
    requested = None
    if outputs:
        requested = []
        for output in outputs:
            if type(output) is not dict or not output.keys() <= _V2_OUTPUT_KEYS:
                return None
            name, output_parameters = output.get("name"), output.get("parameters")
            if type(name) is not str or not _parameters(output_parameters):
                return None
            requested.append(RequestedOutput(name, output_parameters or {}))
    infer = InferRequest(
        model_name=model_name,
        infer_inputs=infer_inputs,
        request_id=ident,
        parameters=parameters,
        request_outputs=requested,
    )
    invalid = v2_invalid_text(infer)
    if invalid:
        raise BadRequestError(
            f"not valid Unicode text (a lone surrogate escape) in {', '.join(invalid)}"
        )
    return infer


def _v2_body(response: InferResponse) -> bytes:
    """The JSON FastAPI writes for KServe's v2 answer (pydantic's InferenceResponse: every
    field, null included, in its declared order)."""
    rest, _ = response.to_rest()
    assert isinstance(rest, dict)
    outputs = [
        {
            "name": o["name"],
            "shape": o["shape"],
            "datatype": o["datatype"],
            "parameters": o.get("parameters"),
            "data": o["data"],
        }
        for o in rest["outputs"]
    ]
    return orjson.dumps(
        {
            "model_name": rest["model_name"],
            "model_version": rest.get("model_version"),
            "id": rest["id"],
            "parameters": rest.get("parameters"),
            "outputs": outputs,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
