"""The chart's access-control wiring: API keys only from a Secret, mounted as files the server
reads, the rate limit as env, the schema's refusals, and the rendered `helm test` script, probes
and ServiceMonitor path against a real server started with the rendered settings."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import CHART, HELMS, find, helm_args, pod_spec, render, run_tool
from tests.model_server.server_support import ServerProcess, start_server

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
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
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


# --- The rendered settings on a real server -----------------------------------------------

USER_KEY = secrets.token_hex(24)
ADMIN_KEY = secrets.token_hex(24)


@pytest.fixture(scope="module")
def chart_server(
    tools, trained_registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, list[dict[str, Any]], Path]]:
    """The server with the rendered predictor's access settings: the Secret's entries as the
    files the chart mounts (under a temporary folder instead of KEYS_DIR)."""
    docs = render("helm4", AUTH)
    container = predictor_pod(docs)["containers"][0]
    root = tmp_path_factory.mktemp("chart-auth")
    keys = root / "api-keys"
    keys.mkdir()
    # As `kubectl create secret generic --from-literal` would hold them (two user keys).
    (keys / "user-api-keys").write_text(f"{USER_KEY},{secrets.token_hex(24)}")
    (keys / "admin-api-keys").write_text(ADMIN_KEY + "\n")
    settings = {
        e["name"]: e["value"].replace(KEYS_DIR, str(keys))
        for e in container["env"]
        if "API_KEYS" in e["name"] or "RATE_LIMIT" in e["name"]
    }
    assert len(settings) == 4, settings
    server = start_server(root / "work", trained_registry.tracking_uri, env_extra=settings)
    try:
        server.wait_ready()
        yield server, docs, keys
    finally:
        server.stop()


@pytest.mark.slow
def test_probes_and_metrics_need_no_key(chart_server) -> None:
    server, docs, _ = chart_server
    container = predictor_pod(docs)["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert server.get(container[probe]["httpGet"]["path"]).status_code == 200, probe
    endpoint = find(docs, "ServiceMonitor")[0]["spec"]["endpoints"][0]
    metrics = server.get(endpoint["path"])
    assert metrics.status_code == 200 and "model_server_requests_total" in metrics.text
    refused = server.post("/v1/models/california-housing:predict", json={"instances": []})
    assert refused.status_code == 401
    allowed = server.get("/logs/1", headers={"X-API-Key": ADMIN_KEY})
    assert allowed.status_code == 200
    assert USER_KEY not in server.log() and ADMIN_KEY not in server.log()


@pytest.mark.slow
def test_helm_test_script_passes_with_a_key(chart_server) -> None:
    server, docs, keys = chart_server
    script = find(docs, "Pod")[0]["spec"]["containers"][0]["args"][0]
    script = re.sub(rf"http://{FULLNAME}-predictor\.[a-z-]+\.svc(?=/)", server.url, script)
    script = script.replace(KEYS_DIR, str(keys))
    assert server.url in script
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=200
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "without an API key: 401" in result.stdout
    assert USER_KEY not in result.stdout + result.stderr
