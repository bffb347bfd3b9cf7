"""A test double of the Kubernetes API server, on loopback, for the retrain trigger.

It serves one CronJob (GET /apis/batch/v1/namespaces/NS/cronjobs/NAME), accepts Job
creations (POST /apis/batch/v1/namespaces/NS/jobs) and records every request it gets, so a
test can assert the exact paths, verbs, credentials and bodies the server sent.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TOKEN = "test-token"


@dataclass
class Request:
    method: str
    path: str  # with its query
    headers: dict[str, str]
    body: Any = None


@dataclass
class KubeDouble:
    namespace: str
    cronjob: dict[str, Any] | None  # None: answers 404 for it
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: Any = None) -> None:
                double.requests.append(
                    Request(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )

            def do_GET(self) -> None:
                self._record()
                cronjob = double.cronjob
                name = (cronjob or {}).get("metadata", {}).get("name")
                if cronjob is not None and urlsplit(self.path).path == double.cronjob_path(name):
                    self._reply(200, cronjob)
                else:
                    missing = self.path.rsplit("/", 1)[-1]
                    self._reply(404, not_found(f'cronjobs.batch "{missing}" not found'))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                self._record(body)
                if urlsplit(self.path).path != double.jobs_path():
                    self._reply(404, not_found("the server could not find the requested resource"))
                    return
                created = json.loads(json.dumps(body))
                created["metadata"]["uid"] = str(uuid.uuid4())
                created["metadata"]["creationTimestamp"] = "2026-12-03T10:00:00Z"
                self._reply(201, created)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def cronjob_path(self, name: str | None) -> str:
        return f"/apis/batch/v1/namespaces/{self.namespace}/cronjobs/{name}"

    def jobs_path(self) -> str:
        return f"/apis/batch/v1/namespaces/{self.namespace}/jobs"

    def start(self) -> KubeDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig whose current context is this double, in `namespace`."""
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "double", "cluster": {"server": self.url}}],
                    "users": [{"name": "predictor", "user": {"token": TOKEN}}],
                    "contexts": [
                        {
                            "name": "double",
                            "context": {
                                "cluster": "double",
                                "user": "predictor",
                                "namespace": self.namespace,
                            },
                        }
                    ],
                    "current-context": "double",
                }
            )
        )
        return path


def not_found(message: str) -> dict[str, Any]:
    """A metav1.Status, as the API server answers a missing object."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NotFound",
        "code": 404,
    }
