"""The floor of Python HTTP serving here: a bare ASGI app on uvicorn (httptools, uvloop).

Not a competitor: a diagnostic for bench/serving.py (`--servers ...,asgi-floor`). It reads
the body, parses the v1 JSON with orjson and answers zeros: what any Python server on uvicorn
pays per request before routing, validation, a model or logging.

    python bench/peers/asgi_floor.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn

READY = orjson.dumps({"name": "floor", "ready": True})
CONTENT_TYPE = (b"content-type", b"application/json")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] == "POST":
        instances = orjson.loads(body)["instances"]
        answer = orjson.dumps({"predictions": [0.0] * len(instances)})
    else:
        answer = READY
    headers = [CONTENT_TYPE, (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False, log_level="warning")
