"""The chart's access-control wiring: API keys only from a Secret, mounted as files the server
reads, the rate limit as env, the schema's refusals; the probes and the ServiceMonitor on open
routes; and the rendered `helm test` script run against a stand-in predictor that wants a key.
(That the server reads the rendered env names is test_processes.py's unread_env check, run on
ci/auth-values.yaml like on every value set.)"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from model_server.auth import Role, required_role
from tests.chart.conftest import CHART, HELMS, find, helm_args, pod_spec, render, run_tool

AUTH = "auth-values.yaml"
KEYS_DIR = "/etc/model-server/api-keys"
FULLNAME = "ch-california-housing"


def predictor_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    isvc = find(docs, "InferenceService")
    return (
        isvc[0]["spec"]["predictor"]
        if isvc
        else pod_spec(find(docs, "Deployment", "-predictor")[0])
    )


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_auth_is_off_by_default(tools) -> None:
    docs = render("helm4")
    pod = predictor_pod(docs)
    env = env_of(pod["containers"][0])
    assert not any("API_KEYS" in name for name in env)
    assert env["MODEL_SERVER_RATE_LIMIT_PER_SECOND"] == "0"
    assert env["MODEL_SERVER_RATE_LIMIT_BURST"] == "20"
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "prediction-spill"]  # no api-keys
    test_pod = find(docs, "Pod")[0]
    assert "volumes" not in test_pod["spec"]
    assert 'key_file = ""' in test_pod["spec"]["containers"][0]["args"][0]


@pytest.mark.parametrize("kserve", ["true", "false"])
def test_keys_come_from_the_secret_as_files(tools, kserve: str) -> None:
    docs = render("helm4", AUTH, (f"kserve.enabled={kserve}",))
    pod = predictor_pod(docs)
    container = pod["containers"][0]
    env = env_of(container)
    assert env["MODEL_SERVER_USER_API_KEYS_FILE"] == f"{KEYS_DIR}/user-api-keys"
    assert env["MODEL_SERVER_ADMIN_API_KEYS_FILE"] == f"{KEYS_DIR}/admin-api-keys"
    # Never the keys themselves in env (no value, no secretKeyRef).
    assert "MODEL_SERVER_USER_API_KEYS" not in env and "MODEL_SERVER_ADMIN_API_KEYS" not in env
    assert env["MODEL_SERVER_RATE_LIMIT_PER_SECOND"] == "50"
    assert env["MODEL_SERVER_RATE_LIMIT_BURST"] == "100"
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "api-keys"]
    assert mount == {"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": True}
    [volume] = [v for v in pod["volumes"] if v["name"] == "api-keys"]
    assert volume["secret"] == {
        "secretName": "predictor-api-keys",
        "defaultMode": 0o440,
        "items": [
            {"key": "user-api-keys", "path": "user-api-keys"},
            {"key": "admin-api-keys", "path": "admin-api-keys"},
        ],
    }
    # The chart creates no Secret for the keys: it only references one.
    assert [s["metadata"]["name"] for s in find(docs, "Secret")] == [f"{FULLNAME}-postgresql"]
    # Probes stay on open routes, with no key.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"].startswith("/v2/health/")
        assert "httpHeaders" not in container[probe]["httpGet"]


def test_helm_test_mounts_one_key_and_checks_the_401(tools) -> None:
    docs = render("helm4", AUTH)
    pod = find(docs, "Pod")[0]
    [volume] = pod["spec"]["volumes"]
    assert volume["secret"]["items"] == [{"key": "user-api-keys", "path": "user-api-keys"}]
    container = pod["spec"]["containers"][0]
    assert container["volumeMounts"] == [
        {"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": True}
    ]
    script = container["args"][0]
    assert f'key_file = "{KEYS_DIR}/user-api-keys"' in script
    assert "expected 401" in script


def test_admin_keys_only(tools) -> None:
    docs = render("helm4", AUTH, ("auth.userKeysKey=",))
    pod = predictor_pod(docs)
    env = env_of(pod["containers"][0])
    assert "MODEL_SERVER_USER_API_KEYS_FILE" not in env
    assert env["MODEL_SERVER_ADMIN_API_KEYS_FILE"] == f"{KEYS_DIR}/admin-api-keys"
    [volume] = [v for v in pod["volumes"] if v["name"] == "api-keys"]
    assert volume["secret"]["items"] == [{"key": "admin-api-keys", "path": "admin-api-keys"}]
    test_pod = find(docs, "Pod")[0]
    assert test_pod["spec"]["volumes"][0]["secret"]["items"] == [
        {"key": "admin-api-keys", "path": "admin-api-keys"}
    ]


def test_notes_show_how_to_send_a_key(tools) -> None:
    result = run_tool(
        "helm4", "install", "ch", str(CHART), "--dry-run=client", *helm_args(AUTH, ())
    )
    assert "get secret predictor-api-keys" in result.stdout
    assert '-H "Authorization: Bearer $KEY"' in result.stdout


BAD_AUTH_VALUES = {
    "enabled without a Secret": ["auth.enabled=true"],
    "enabled without any key entry": [
        "auth.enabled=true",
        "auth.existingSecret=s",
        "auth.userKeysKey=",
        "auth.adminKeysKey=",
    ],
    "not a Secret key name": ["auth.userKeysKey=a/b"],
    "a key given as a value": ["auth.userKey=abc"],
    "negative rate": ["predictor.rateLimit.perSecond=-1"],
    "empty burst": ["predictor.rateLimit.burst=0"],
    "fractional burst": ["predictor.rateLimit.burst=1.5"],
}


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("sets", list(BAD_AUTH_VALUES.values()), ids=list(BAD_AUTH_VALUES))
def test_schema_rejects_bad_auth_values(tools, helm: str, sets: list[str]) -> None:
    result = run_tool(helm, "template", "x", str(CHART), *helm_args(None, tuple(sets)), check=False)
    assert result.returncode != 0, f"{sets} rendered"
    assert "schema" in result.stderr.lower() or "at '" in result.stderr, result.stderr


# --- The rendered helm test script, probes and scrape path -------------------------------


def test_probes_and_scrape_path_are_open_routes(tools) -> None:
    """What the kubelet and Prometheus call needs no key (they send none)."""
    for value_set in (AUTH, None):
        docs = render("helm4", value_set)
        container = predictor_pod(docs)["containers"][0]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert required_role(container[probe]["httpGet"]["path"]) is Role.OPEN, probe
        for monitor in find(docs, "ServiceMonitor"):
            for endpoint in monitor["spec"]["endpoints"]:
                assert required_role(endpoint["path"]) is Role.OPEN


class Predictor(BaseHTTPRequestHandler):
    """Stands in for the predictor's v1 route with access control: 200 for `Bearer <key>`,
    401 otherwise (or 200 for anyone when `key` is None). The real server's answers to the
    same requests are tested in tests/model_server/test_auth.py."""

    key: str | None = None
    seen: list[str | None] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        sent = self.headers.get("Authorization")
        self.seen.append(sent)
        if self.key is not None and sent != f"Bearer {self.key}":
            body, status = b'{"error": "an API key is required"}', 401
        else:
            body, status = b'{"predictions": [4.5], "model_version": "1"}', 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def predictor(key: str | None) -> Iterator[tuple[str, list[str | None]]]:
    handler = type("Handler", (Predictor,), {"key": key, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


def run_helm_test(docs: list[dict[str, Any]], url: str, keys: Path) -> subprocess.CompletedProcess:
    script = find(docs, "Pod")[0]["spec"]["containers"][0]["args"][0]
    script = re.sub(rf"http://{FULLNAME}-predictor\.[a-z-]+\.svc(?=/)", url, script)
    assert url in script
    script = script.replace(KEYS_DIR, str(keys))
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )


def test_helm_test_script_sends_the_first_key_and_checks_the_401(tools, tmp_path: Path) -> None:
    first, second = secrets.token_hex(24), secrets.token_hex(24)
    # As `kubectl create secret generic --from-literal=user-api-keys=K1,K2` holds them.
    (tmp_path / "user-api-keys").write_text(f"{first},{second}")
    docs = render("helm4", AUTH)
    with predictor(first) as (url, seen):
        result = run_helm_test(docs, url, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "without an API key: 401" in result.stdout
    assert seen == [f"Bearer {first}", None]
    assert first not in result.stdout + result.stderr


def test_helm_test_script_fails_if_the_server_takes_no_key(tools, tmp_path: Path) -> None:
    (tmp_path / "user-api-keys").write_text(secrets.token_hex(24) + "\n")
    with predictor(None) as (url, _):
        result = run_helm_test(render("helm4", AUTH), url, tmp_path)
    assert result.returncode != 0
    assert "access control is off" in result.stderr


def test_helm_test_script_without_auth_sends_no_key(tools, tmp_path: Path) -> None:
    with predictor(None) as (url, seen):
        result = run_helm_test(render("helm4"), url, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert seen == [None]
