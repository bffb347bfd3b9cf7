"""A body over MODEL_SERVER_MAX_BODY_BYTES is answered 413 even when the client writes all of
it before reading, as `requests` does: the server reads and discards the rest (bounded) before
it answers, instead of closing on unread bytes (the client saw a broken pipe or a reset)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.support.server import MODEL, ServerProcess

V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"
TEN_MB = 10 * 1024 * 1024
LIMIT = 1_048_576  # the shared server's MODEL_SERVER_MAX_BODY_BYTES


def big_body(opening: bytes) -> bytes:
    """~10 MB of a well-formed start: 100,000 instances' worth of bytes."""
    return opening + b" " * TEN_MB + b"]}"


def chunks(body: bytes, size: int = 65536) -> Iterator[bytes]:
    """A generator body: `requests` sends it chunked, with no Content-Length."""
    for i in range(0, len(body), size):
        yield body[i : i + size]


@pytest.mark.parametrize("path, opening", [(V1, b'{"instances": ['), (V2, b'{"inputs": [')])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_10mb_body_gets_the_413_and_its_message(
    served: ServerProcess, path: str, opening: bytes, declared: bool
) -> None:
    body = big_body(opening)
    with requests.Session() as session:
        data = body if declared else chunks(body)
        response = session.post(
            served.url + path, data=data, headers={"content-type": "application/json"}, timeout=60
        )
        assert response.status_code == 413, response.text[:500]
        error = response.json()["error"]
        expected = f"request body of {len(body)} bytes; at most {LIMIT}" if declared else "over"
        assert expected in error
        assert str(LIMIT) in error
        # The body was read to its end: the same connection answers the next request.
        after = session.get(served.url + "/v2/health/live", timeout=30)
        assert after.status_code == 200
