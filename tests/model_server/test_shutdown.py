"""The shutdown race, made deterministic: a keep-alive connection's next request is in the
server's socket, unread, when the shutdown begins. Plain uvicorn closes that connection as
idle and the client gets a reset; GracefulServer answers the request, then closes the
connection.

(tests/model_server/test_faults.py checks the same on the real server under load, where the
race is a matter of timing.)"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvicorn

from model_server.server import PredictorRESTServer
from model_server.shutdown import GracefulServer

REQUEST = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    )
    await send({"type": "http.response.body", "body": b"hello"})


def read_response(client: socket.socket) -> bytes:
    """One response of `hello`'s (headers and its 5-byte body), or what came before EOF."""
    data = b""
    while not (b"\r\n\r\n" in data and data.endswith(b"hello")):
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


async def shutdown_with_a_request_unread(server_class: type[uvicorn.Server], http: str) -> bytes:
    config = uvicorn.Config(
        hello, host="127.0.0.1", port=0, http=http, lifespan="off", log_config=None
    )
    config.load()
    server = server_class(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    port = server.servers[0].sockets[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(REQUEST)
        first = await asyncio.to_thread(read_response, client)
        assert first.startswith(b"HTTP/1.1 200"), first
        # An idle keep-alive connection now; the next request reaches the server's socket
        # and the shutdown starts before the event loop has had a chance to read it.
        client.sendall(REQUEST)
        await server.shutdown()
        try:
            answer = await asyncio.to_thread(read_response, client)
            return answer + (b"<closed>" if client.recv(1) == b"" else b"<open>")
        except ConnectionResetError:
            return b"<reset>"


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_plain_uvicorn_loses_the_request(http: str) -> None:
    """The race this module exists for, shown on the class it mends."""
    assert asyncio.run(shutdown_with_a_request_unread(uvicorn.Server, http)) in (
        b"<reset>",
        b"<closed>",
    )


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_graceful_server_answers_it_then_closes(http: str) -> None:
    answer = asyncio.run(shutdown_with_a_request_unread(GracefulServer, http))
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b"hello<closed>"), answer


def test_the_predictor_serves_with_it() -> None:
    server = PredictorRESTServer(
        "app:app", None, None, 0, host="127.0.0.1", customize=lambda app: app
    )
    assert type(server._server) is GracefulServer
