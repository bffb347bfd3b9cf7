"""The ASGI middleware in front of every route: access control, then start clock, in-flight
gauge, body size cap.

AccessGuard (outermost, installed only when keys or a rate limit are configured) refuses a
request without the key its route needs, or over its rate, before its body is read; the refusal
is neither a prediction-log record nor a request metric (an unauthenticated flood costs no
database write). A body above the cap is refused with 413 before anything parses it; one that
passes is read once here and replayed to the route, which then reads it from memory.

Before a 413 the rest of the body is read and thrown away, up to DRAIN_BYTES and DRAIN_SECONDS
(as nginx's lingering close does): a client that writes its whole body before reading, as
`requests` does, otherwise meets a closed socket (broken pipe, connection reset) instead of
the answer. Not when the client asked `Expect: 100-continue`: it waits for the answer and
sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Gauge
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_server.accounting import REQUEST_STARTED
from model_server.auth import AccessControl
from model_server.errors import (
    BadRequestError,
    ModelServerError,
    PayloadTooLargeError,
    error_response,
)
from model_server.protocol import protocol_of

log = logging.getLogger(__name__)

ErrorResponder = Callable[[Request, Exception], Awaitable[Response]]
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# What a refused body may still cost to read (a 10 MB upload is ~10 ms on loopback): beyond,
# the connection is closed as before.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0


class AccessGuard:
    """Answers 401, 403 or 429 (the server's error JSON) for a request that `access` refuses;
    passes the others on untouched."""

    def __init__(
        self, app: ASGIApp, *, access: AccessControl, refused: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self.access = access
        self.refused = refused  # counts a refusal by its kind (metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else None
        refusal = self.access.check(scope["path"], scope["headers"], address)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        log.info(
            "refused %s %s from %s: %d (%s)",
            scope["method"],
            scope["path"],
            address,
            refusal.status,
            refusal.reason,
        )
        if self.refused is not None:
            self.refused(refusal.kind)
        response = error_response(ModelServerError(refusal.message, status_code=refusal.status))
        response.headers.update(refusal.headers)
        await response(scope, receive, send)


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        respond_error: ErrorResponder,
        inflight: Gauge,
        clock: Callable[[], float],
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.respond_error = respond_error
        self.inflight = inflight
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        REQUEST_STARTED.set(self.clock())
        if scope["method"] in BODY_METHODS:
            try:
                receive = await self._buffered(scope, receive)
            except ModelServerError as error:
                response = await self.respond_error(Request(scope), error)
                await response(scope, receive, send)
                return
        if protocol_of(scope["path"]) is None:
            await self.app(scope, receive, send)
            return
        with self.inflight.track_inprogress():
            await self.app(scope, receive, send)

    async def _buffered(self, scope: Scope, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise BadRequestError("invalid Content-Length header") from None
            if size > limit:
                if size <= DRAIN_BYTES:
                    await _drain(scope, receive)
                raise PayloadTooLargeError(
                    f"request body of {size} bytes; at most {limit} accepted"
                )
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see it
                return _replay(b"".join(chunks), receive, first=message)
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:  # chunked bodies declare no length: count as they come
                if message.get("more_body", False):
                    await _drain(scope, receive)
                raise PayloadTooLargeError(f"request body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return _replay(b"".join(chunks), receive)


async def _drain(scope: Scope, receive: Receive) -> None:
    """Read and discard the rest of the request's body, within DRAIN_BYTES and DRAIN_SECONDS."""
    for name, value in scope["headers"]:
        if name == b"expect" and value.lower() == b"100-continue":
            return
    deadline = time.monotonic() + DRAIN_SECONDS
    drained = 0
    while drained <= DRAIN_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), left)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _replay(body: bytes, receive: Receive, first: Message | None = None) -> Receive:
    pending: list[Message] = [
        first if first is not None else {"type": "http.request", "body": body, "more_body": False}
    ]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay
