"""Access control: keys and roles, the role of every route, rate limiting, the settings that
configure them, and a real server started with keys (no key ever leaves it)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from model_server.auth import (
    KEY_ENV,
    MIN_KEY_LENGTH,
    AccessControl,
    KeyRing,
    Role,
    RoutePolicy,
    TokenBuckets,
    digest,
    document_access,
    fingerprint,
    parse_keys,
    presented_key,
    required_role,
    retry_after,
)
from model_server.middleware import AccessGuard
from model_server.settings import ServerSettings
from tests.support.server import MODEL, ROWS, ServerProcess, sample, start_server

USER = "u" * 32
ADMIN = "a" * 32
V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"x"), (b"authorization", f"Bearer {key}".encode())]


def ring() -> KeyRing:
    return KeyRing([digest(USER.encode())], [digest(ADMIN.encode())])


# -- keys --------------------------------------------------------------------------------------


def test_keys_are_parsed_into_digests_only() -> None:
    keys = parse_keys(f" {USER},{ADMIN}\n{USER}\n\n", "SRC")
    assert keys == (hashlib.sha256(USER.encode()).digest(), hashlib.sha256(ADMIN.encode()).digest())
    assert parse_keys("", "SRC") == () and parse_keys(" ,\n", "SRC") == ()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("short-secret", "16 are required"),
        (f"{USER},tiny-secret", "key 2 has 11 characters"),
        ("ключ-ключ-ключ-ключ-ключ", "not visible ASCII"),
    ],
)
def test_a_bad_key_is_refused_without_echoing_it(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        parse_keys(text, "MODEL_SERVER_USER_API_KEYS")
    assert "MODEL_SERVER_USER_API_KEYS" in str(refused.value)
    for part in text.split(","):
        assert part not in str(refused.value)
    assert MIN_KEY_LENGTH == 16


def test_key_ring_roles_and_constant_time_lookup() -> None:
    keys = KeyRing([digest(USER.encode()), digest(ADMIN.encode())], [digest(ADMIN.encode())])
    assert len(keys) == 2  # a key in both lists is one admin key
    found = keys.find(USER.encode())
    assert found is not None and found.role is Role.USER
    found = keys.find(ADMIN.encode())
    assert found is not None and found.role is Role.ADMIN
    assert keys.find(b"x" * 32) is None and keys.find(b"") is None
    assert keys.count(Role.USER) == 1 and keys.count(Role.ADMIN) == 1
    # The fingerprint is what `printf %s KEY | sha256sum | cut -c1-8` prints; no key in repr.
    assert found.fingerprint == hashlib.sha256(ADMIN.encode()).hexdigest()[:8]
    assert fingerprint(digest(ADMIN.encode())) == found.fingerprint
    assert ADMIN not in repr(found) and ADMIN not in repr(keys.credentials)


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ([(b"authorization", b"Bearer k1")], b"k1"),
        ([(b"authorization", b"bearer   k1 ")], b"k1"),
        ([(b"x-api-key", b"k2")], b"k2"),
        ([(b"x-api-key", b"k2"), (b"authorization", b"Bearer k1")], b"k1"),
        ([(b"authorization", b"Basic dTpw"), (b"x-api-key", b"k2")], b"k2"),
        ([(b"authorization", b"Basic dTpw")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"x-request-key", b"customer-42")], None),  # the canary's key is no credential
        ([], None),
    ],
)
def test_the_key_comes_from_bearer_or_x_api_key(
    headers: list[tuple[bytes, bytes]], key: bytes | None
) -> None:
    assert presented_key(headers) == key


# -- routes ------------------------------------------------------------------------------------

SECURITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
DOC_ROLES = {"open": Role.OPEN, "user": Role.USER, "admin": Role.ADMIN, "(404)": Role.ADMIN}


def documented_route_roles() -> dict[str, Role]:
    """Every route the server has (KServe's, ours, and KServe's hidden versioned ones) with
    its role, read from docs/security.md's table "The role of each route": the one table, kept
    true by test_route_roles (against auth.py) and the OpenAPI test (against the app)."""
    section = SECURITY_DOC.read_text(encoding="utf-8").split("### The role of each route")[1]
    roles: dict[str, Role] = {}
    for line in section.split("\n\n")[1].splitlines()[2:]:
        routes, role = (cell.strip() for cell in line.strip("|").split("|")[:2])
        for route in re.findall(r"`(?:GET|POST) ([^`]+)`", routes):
            template = route.replace("NAME", "{model_name}").replace("/V", "/{model_version}")
            roles[template.replace("{n}", "{limit}")] = DOC_ROLES[role]
    return roles


ROUTE_ROLES = documented_route_roles()


def test_the_documented_table_is_read_whole() -> None:
    assert len(ROUTE_ROLES) == 29
    assert ROUTE_ROLES["/v2/models/{model_name}/versions/{model_version}/ready"] is Role.OPEN
    assert ROUTE_ROLES["/retrain/logs/{limit}"] is Role.ADMIN


@pytest.mark.parametrize("template", sorted(ROUTE_ROLES))
def test_route_roles(template: str) -> None:
    path = template.replace("{model_name}", MODEL).replace("{model_version}", "3")
    path = path.replace("{limit}", "10")
    assert required_role(path) is ROUTE_ROLES[template]
    assert required_role(template) is ROUTE_ROLES[template]  # what the OpenAPI document has


@pytest.mark.parametrize(
    ("path", "role"),
    [
        (f"{V1}/", Role.USER),  # Starlette redirects to the path without the slash
        ("/health/", Role.OPEN),
        ("/logs/10/", Role.ADMIN),
        ("/redoc", Role.ADMIN),  # not served: unknown paths need an admin key
        ("/docs", Role.OPEN),
        ("/docs/assets/swagger-ui.css", Role.OPEN),
        ("/docs/other", Role.ADMIN),
        ("/HEALTH", Role.ADMIN),
        ("/v1/models/x:unknown", Role.ADMIN),
        ("/v2/models/x/infer/more", Role.ADMIN),
        ("/v2/models/x/versions/1/ready/more", Role.ADMIN),
        ("//health", Role.ADMIN),
        ("/v1/models/", Role.OPEN),  # the model list
        ("/v1/models//", Role.OPEN),
    ],
)
def test_unknown_paths_are_closed(path: str, role: Role) -> None:
    assert required_role(path) is role


def test_route_policy_remembers_a_bounded_number_of_paths() -> None:
    calls: list[str] = []

    def classify(path: str) -> Role:
        calls.append(path)
        return Role.ADMIN

    policy = RoutePolicy(classify)
    for _ in range(3):
        assert policy("/a") is Role.ADMIN
    assert calls == ["/a"]
    for i in range(3000):
        policy(f"/p{i}")
    assert len(policy._cache) == 1024


# -- rate limiting -----------------------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token every 0.5 s
    assert buckets.take("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 60  # refills to the burst, not beyond
    assert [buckets.take("a") for _ in range(4)][3] > 0


def test_token_buckets_stay_bounded() -> None:
    clock = Clock()
    buckets = TokenBuckets(1.0, 2, clock=clock, max_buckets=100)
    for i in range(100):
        buckets.take(i)
    clock.now += 10  # all idle, refilled: dropped first
    buckets.take("new")
    assert len(buckets) == 1
    for i in range(250):  # all busy: the older half goes
        buckets.take(f"busy{i}")
    assert len(buckets) <= 100


@pytest.mark.parametrize(("wait", "header"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.2, 2), (9.99, 10)])
def test_retry_after_is_whole_seconds_at_least_one(wait: float, header: int) -> None:
    assert retry_after(wait) == header


def test_bad_bucket_settings() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(0, 1)
    with pytest.raises(ValueError):
        TokenBuckets(1, 0)


# -- the check ---------------------------------------------------------------------------------


def test_check_with_keys() -> None:
    access = AccessControl(ring())
    assert access.auth and access.active
    assert access.check("/v2/health/ready", [], None) is None
    assert access.check(V1, bearer(USER), None) is None
    assert access.check(V1, bearer(ADMIN), None) is None  # admin keys can do what users can
    assert access.check("/logs/5", bearer(ADMIN), None) is None
    assert access.check("/retrain/trigger", [(b"x-api-key", ADMIN.encode())], None) is None

    missing = access.check(V1, [], None)
    assert missing is not None and missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer ")
    unknown = access.check(V1, bearer("n" * 32), None)
    assert unknown is not None and unknown.status == 401
    assert 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
    forbidden = access.check("/retrain/trigger", bearer(USER), None)
    assert forbidden is not None and forbidden.status == 403
    assert "admin" in forbidden.message
    assert forbidden.reason == f"user key {hashlib.sha256(USER.encode()).hexdigest()[:8]}"
    for refusal in (missing, unknown, forbidden):
        assert USER not in repr(refusal) and "n" * 32 not in repr(refusal)


def test_rate_limit_per_key() -> None:
    clock = Clock()
    other = "o" * 32
    keys = KeyRing([digest(USER.encode()), digest(other.encode())], [])
    access = AccessControl(keys, TokenBuckets(0.25, 2, clock=clock))
    assert access.check(V1, bearer(USER), None) is None
    assert access.check(V1, bearer(USER), None) is None
    limited = access.check(V1, bearer(USER), None)
    assert limited is not None and limited.status == 429
    assert limited.headers == {"Retry-After": "4"}
    assert "retry in 4 s" in limited.message
    assert access.check(V1, bearer(other), None) is None  # its own bucket
    # Open routes are never limited (probes, scrapes); refusals take no token.
    for _ in range(10):
        assert access.check("/v2/health/live", bearer(USER), None) is None
        assert access.check(V1, bearer("n" * 32), None) is not None
    assert access.check(V1, bearer(other), None) is None
    clock.now += 4
    assert access.check(V1, bearer(USER), None) is None


def test_rate_limit_per_address_without_keys() -> None:
    access = AccessControl(KeyRing(), TokenBuckets(1.0, 1, clock=Clock()))
    assert not access.auth and access.active
    assert access.check(V1, [], "10.0.0.1") is None
    refused = access.check(V1, [], "10.0.0.1")
    assert refused is not None and refused.status == 429 and refused.headers["Retry-After"] == "1"
    assert access.check(V1, [], "10.0.0.2") is None
    assert access.check("/metrics", [], "10.0.0.1") is None


def test_nothing_configured_is_nothing_to_check() -> None:
    access = AccessControl(KeyRing())
    assert not access.active
    assert access.describe() == "access control: no API keys (every route open); no rate limit"


# -- settings ----------------------------------------------------------------------------------


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*KEY_ENV, *(f"{n}_FILE" for n in KEY_ENV)):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MODEL_SERVER_RATE_LIMIT_PER_SECOND", raising=False)
    monkeypatch.delenv("MODEL_SERVER_RATE_LIMIT_BURST", raising=False)
    return monkeypatch


def test_settings_default_to_no_access_control(no_key_env: pytest.MonkeyPatch) -> None:
    settings = ServerSettings()
    assert settings.user_key_digests == () and settings.admin_key_digests == ()
    assert settings.rate_limit_per_second == 0 and settings.rate_limit_burst == 20
    assert not AccessControl.from_settings(settings).active


def test_settings_read_keys_from_env_and_files(
    no_key_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = "o" * 20
    (tmp_path / "user").write_text(f"{other}\n{USER}\n")  # as a Secret is mounted: one a line
    (tmp_path / "admin").write_text(ADMIN)
    no_key_env.setenv("MODEL_SERVER_USER_API_KEYS", USER)
    no_key_env.setenv("MODEL_SERVER_USER_API_KEYS_FILE", str(tmp_path / "user"))
    no_key_env.setenv("MODEL_SERVER_ADMIN_API_KEYS_FILE", str(tmp_path / "admin"))
    no_key_env.setenv("MODEL_SERVER_RATE_LIMIT_PER_SECOND", "5")
    no_key_env.setenv("MODEL_SERVER_RATE_LIMIT_BURST", "7")
    settings = ServerSettings()
    assert settings.user_key_digests == (digest(USER.encode()), digest(other.encode()))
    assert settings.admin_key_digests == (digest(ADMIN.encode()),)
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert USER not in text and ADMIN not in text and other not in text
    access = AccessControl.from_settings(settings)
    assert access.auth and access.limiter is not None
    assert access.describe() == (
        "access control: API keys required (2 user, 1 admin); rate limit 5/s, burst 7, per key"
    )


@pytest.mark.parametrize(
    ("env", "content", "says"),
    [
        ("MODEL_SERVER_ADMIN_API_KEYS", "not-long-enough", "at least 16"),
        ("MODEL_SERVER_USER_API_KEYS_FILE", None, "cannot read"),
        ("MODEL_SERVER_USER_API_KEYS_FILE", "\n\n", "holds no key"),
        ("MODEL_SERVER_ADMIN_API_KEYS_FILE", "short-secret\n", "at least 16"),
        ("MODEL_SERVER_ADMIN_API_KEYS_FILE", b"\xff" * 20, "not ASCII"),
        ("MODEL_SERVER_RATE_LIMIT_PER_SECOND", "-1", "greater than or equal"),
        ("MODEL_SERVER_RATE_LIMIT_BURST", "0", "greater than or equal"),
    ],
)
def test_settings_refuse_bad_keys_without_echoing_them(
    no_key_env: pytest.MonkeyPatch,
    tmp_path: Path,
    env: str,
    content: str | bytes | None,
    says: str,
) -> None:
    value = content if isinstance(content, str) else ""
    if env.endswith("_FILE"):
        path = tmp_path / "keys"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        value = str(path)
    no_key_env.setenv(env, value)
    with pytest.raises(ValidationError) as refused:
        ServerSettings()
    message = str(refused.value)
    assert says in message
    if isinstance(content, str) and content.strip():
        assert content.strip() not in message


def test_the_retraining_process_gets_no_key(no_key_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from model_server import launchers

    no_key_env.setenv("MODEL_SERVER_USER_API_KEYS", USER)
    no_key_env.setenv("MODEL_SERVER_ADMIN_API_KEYS", ADMIN)
    no_key_env.setenv("MODEL_SERVER_USER_API_KEYS_FILE", "/run/keys/user")
    seen: dict[str, Any] = {}

    class Popen:
        pid = 1

        def __init__(self, command: list[str], **kwargs: Any) -> None:
            seen.update(kwargs["env"])

        def poll(self) -> int:
            return 0

        def wait(self, timeout: float | None = None) -> int:
            return 0

    no_key_env.setattr(launchers.subprocess, "Popen", Popen)
    launcher = launchers.LocalLauncher(tmp_path, tmp_path / "logs", "sqlite:///x.db")
    launcher.launch(force=False)
    assert "MODEL_SERVER_USER_API_KEYS" not in seen and "MODEL_SERVER_ADMIN_API_KEYS" not in seen
    assert seen["MODEL_SERVER_USER_API_KEYS_FILE"] == "/run/keys/user"  # a path, not a key


# -- the middleware, on a small app ------------------------------------------------------------


def small_app(access: AccessControl, bodies: list[bytes]) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        bodies.append(await request.body())
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route(V1, echo, methods=["POST"]), Route("/v2/health/live", echo)])


def test_middleware_answers_the_servers_error_json(caplog: pytest.LogCaptureFixture) -> None:
    bodies: list[bytes] = []
    access = AccessControl(ring(), TokenBuckets(0.5, 1))
    guard = AccessGuard(small_app(access, bodies), access=access)

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.post(V1, content=b"x" * 1000),
                await client.post(V1, content=b"row", headers={"X-API-Key": USER}),
                await client.post(V1, content=b"row", headers={"X-API-Key": USER}),
                await client.get("/v2/health/live"),
            ]

    with caplog.at_level("INFO", logger="model_server.middleware"):
        refused, ok, limited, live = asyncio.run(calls())
    assert refused.status_code == 401
    assert set(refused.json()) == {"error"} and "API key" in refused.json()["error"]
    assert refused.headers["www-authenticate"] == 'Bearer realm="model-server"'
    # The refused requests' bodies were never read; the open route ran.
    assert ok.status_code == 200 and bodies == [b"row", b""]
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert set(limited.json()) == {"error"}
    assert live.status_code == 200
    assert "refused POST" in caplog.text and "401 (no key)" in caplog.text
    assert f"429 (key {hashlib.sha256(USER.encode()).hexdigest()[:8]})" in caplog.text
    assert USER not in caplog.text


def test_openapi_declares_schemes_roles_and_refusals() -> None:
    schema: dict[str, Any] = {
        "paths": {
            "/health": {"get": {"responses": {"200": {}}}},
            "/feedback": {"post": {"responses": {"200": {}}}},
            "/retrain/trigger": {"post": {"responses": {"202": {}}}, "parameters": []},
        }
    }
    document_access(schema, AccessControl(ring(), TokenBuckets(1, 1)))
    paths = schema["paths"]
    assert paths["/health"]["get"]["x-required-role"] == "open"
    assert "security" not in paths["/health"]["get"]
    assert set(paths["/health"]["get"]["responses"]) == {"200"}
    feedback = paths["/feedback"]["post"]
    assert feedback["x-required-role"] == "user"
    assert feedback["security"] == [{"BearerAuth": []}, {"ApiKeyAuth": []}]
    assert set(feedback["responses"]) == {"200", "401", "429"}
    assert set(paths["/retrain/trigger"]["post"]["responses"]) == {"202", "401", "403", "429"}
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["BearerAuth"]["description"],
    }
    assert schemes["ApiKeyAuth"]["in"] == "header" and schemes["ApiKeyAuth"]["name"] == "X-API-Key"
    text = json.dumps(schema)
    assert USER not in text and ADMIN not in text
    assert digest(USER.encode()).hex() not in text


def test_openapi_with_a_rate_limit_only() -> None:
    schema: dict[str, Any] = {
        "paths": {
            "/health": {"get": {"responses": {"200": {}}}},
            "/feedback": {"post": {"responses": {"200": {}}}},
        }
    }
    document_access(schema, AccessControl(KeyRing(), TokenBuckets(1, 1)))
    feedback = schema["paths"]["/feedback"]["post"]
    assert set(feedback["responses"]) == {"200", "429"}
    assert "security" not in feedback and "x-required-role" not in feedback
    assert "securitySchemes" not in schema["components"]
    assert set(schema["paths"]["/health"]["get"]["responses"]) == {"200"}


# -- a real server with keys ---------------------------------------------------------------------

# Random per run: found anywhere in what the server says, they could only have come from it.
REAL_USER = "user-" + secrets.token_urlsafe(24)
REAL_ADMIN = "admin-" + secrets.token_urlsafe(24)
REAL_LIMITED = "limited-" + secrets.token_urlsafe(24)
REAL_UNKNOWN = "unknown-" + secrets.token_urlsafe(24)
SECRETS = (REAL_USER, REAL_ADMIN, REAL_LIMITED, REAL_UNKNOWN)
BURST = 30


class Recorder:
    """Every response the tests get from the server, to look for keys in them at the end."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.seen: list[httpx.Response] = []
        self.http = httpx.Client(
            base_url=server.url,
            timeout=30.0,
            event_hooks={"response": [lambda r: self.seen.append(r)]},
        )

    def call(
        self, method: str, path: str, key: str | None = None, how: str = "bearer", **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            if how == "bearer":
                headers["Authorization"] = f"Bearer {key}"
            else:
                headers["X-API-Key"] = key
        response = self.http.request(method, path, headers=headers, **kw)
        response.read()
        return response


@pytest.fixture(scope="module")
def guarded(trained_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    """The server with user keys from the environment, the admin key from a file (as the chart
    mounts a Secret), and a rate limit."""
    workdir = tmp_path_factory.mktemp("guarded")
    key_file = workdir / "secrets" / "admin-api-keys"
    key_file.parent.mkdir()
    key_file.write_text(REAL_ADMIN + "\n")
    server = start_server(
        workdir,
        trained_registry.tracking_uri,
        user_api_keys=f"{REAL_USER},{REAL_LIMITED}",
        admin_api_keys_file=str(key_file),
        rate_limit_per_second="1",
        rate_limit_burst=str(BURST),
    )
    try:
        server.wait_ready()
        recorder = Recorder(server)
        yield recorder
        recorder.http.close()
    finally:
        server.stop()


OPEN_ROUTES = (
    "/health",
    "/v2/health/live",
    "/v2/health/ready",
    f"/v1/models/{MODEL}",
    f"/v2/models/{MODEL}",
    f"/v2/models/{MODEL}/ready",
    "/metrics",
    "/openapi.json",
)


def test_server_open_routes_need_no_key(guarded: Recorder) -> None:
    for path in OPEN_ROUTES:
        assert guarded.call("GET", path).status_code == 200, path


def test_server_inference_and_feedback_need_a_user_key(guarded: Recorder) -> None:
    body = {"instances": [list(ROWS[0])]}
    refused = guarded.call("POST", V1, json=body)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="model-server"'
    assert "API key" in refused.json()["error"]
    wrong = guarded.call("POST", V1, REAL_UNKNOWN, json=body)
    assert wrong.status_code == 401 and "invalid_token" in wrong.headers["www-authenticate"]

    served = guarded.call("POST", V1, REAL_USER, json=body)
    assert served.status_code == 200, served.text
    [prediction_id] = served.json()["prediction_ids"]
    v2 = {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64", "data": list(ROWS[1])}]}
    assert guarded.call("POST", V2, REAL_USER, "x-api-key", json=v2).status_code == 200
    assert guarded.call("POST", V2, json=v2).status_code == 401
    # An admin key is valid wherever a user key is.
    assert guarded.call("POST", V1, REAL_ADMIN, json=body).status_code == 200

    feedback = {"prediction_id": prediction_id, "actual": 2.5}
    assert guarded.call("POST", "/feedback", json=feedback).status_code == 401
    assert guarded.call("POST", "/feedback", REAL_USER, json=feedback).status_code == 200
    assert guarded.call("GET", "/metrics/summary").status_code == 401
    assert guarded.call("GET", "/metrics/summary", REAL_USER).status_code == 200


def test_server_operations_need_an_admin_key(guarded: Recorder) -> None:
    for method, path, body in (
        ("GET", "/logs/5", None),
        ("GET", "/retrain/status", None),
        ("GET", "/retrain/logs/5", None),
        ("POST", "/retrain/config", {"no_such_field": 1}),
        ("POST", "/retrain/trigger", {"force": "yes"}),
        ("POST", f"/v2/repository/models/{MODEL}/unload", None),
    ):
        assert guarded.call(method, path, json=body).status_code == 401, path
        forbidden = guarded.call(method, path, REAL_USER, json=body)
        assert forbidden.status_code == 403, path
        assert forbidden.json() == {"error": "this route needs an admin key"}
    assert guarded.call("GET", "/logs/5", REAL_ADMIN).status_code == 200
    assert guarded.call("GET", "/retrain/status", REAL_ADMIN, "x-api-key").status_code == 200
    assert guarded.call("GET", "/retrain/logs/5", REAL_ADMIN).status_code == 200
    # Past the key, the route's own checks (a strict body: nothing is launched or changed).
    assert (
        guarded.call("POST", "/retrain/trigger", REAL_ADMIN, json={"force": "yes"}).status_code
        == 422
    )
    assert (
        guarded.call("POST", "/retrain/config", REAL_ADMIN, json={"no_such_field": 1}).status_code
        == 422
    )


def test_server_refusals_are_not_predictions(guarded: Recorder) -> None:
    guarded.call("POST", V1, json={"instances": [list(ROWS[0])]})  # 401
    served = guarded.call("POST", V1, REAL_USER, json={"instances": [list(ROWS[0])]})
    [prediction_id] = served.json()["prediction_ids"]
    feedback = {"prediction_id": prediction_id, "actual": 1.0}  # commits the queued records
    assert guarded.call("POST", "/feedback", REAL_USER, json=feedback).status_code == 200
    statuses = {row["status"] for row in guarded.call("GET", "/logs/200", REAL_ADMIN).json()}
    assert statuses == {200}
    metrics = guarded.call("GET", "/metrics").text
    assert 'status="401"' not in metrics and 'status="403"' not in metrics


def test_server_rate_limit_per_key(guarded: Recorder) -> None:
    # A body the route refuses at once (422): no database call, so the burst is sent in well
    # under a second and the bucket (1 token a second) cannot refill in between.
    body = {"prediction_id": "", "actual": 1.0}
    statuses = [
        guarded.call("POST", "/feedback", REAL_LIMITED, json=body).status_code
        for _ in range(BURST + 5)
    ]
    assert statuses[0] == 422 and statuses[-1] == 429, statuses
    limited = guarded.call("POST", "/feedback", REAL_LIMITED, json=body)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert "rate limit" in limited.json()["error"] and set(limited.json()) == {"error"}
    # Other keys have their own buckets; probes are never limited.
    assert guarded.call("POST", "/feedback", REAL_USER, json=body).status_code == 422
    assert guarded.call("GET", "/v2/health/ready").status_code == 200


def test_server_counts_refusals_by_kind(guarded: Recorder) -> None:
    def refusals() -> dict[str, float | None]:
        text = guarded.call("GET", "/metrics").text
        kinds = ("missing_key", "unknown_key", "forbidden", "rate_limited")
        return {k: sample(text, "model_server_access_refusals_total", kind=k) for k in kinds}

    before = refusals()
    assert None not in before.values()  # every kind exported from the start
    assert guarded.call("POST", V1, json={"instances": []}).status_code == 401
    assert guarded.call("POST", V1, REAL_UNKNOWN, json={"instances": []}).status_code == 401
    assert guarded.call("GET", "/logs/1", REAL_USER).status_code == 403
    body = {"prediction_id": "", "actual": 1.0}
    statuses = [
        guarded.call("POST", "/feedback", REAL_LIMITED, json=body).status_code
        for _ in range(BURST + 2)
    ]
    after = refusals()
    delta = {kind: after[kind] - before[kind] for kind in before}  # type: ignore[operator]
    assert delta == {
        "missing_key": 1,
        "unknown_key": 1,
        "forbidden": 1,
        "rate_limited": statuses.count(429),
    }
    assert statuses.count(429) >= 1


def test_server_openapi_declares_the_security_schemes(guarded: Recorder) -> None:
    document = guarded.call("GET", "/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert schemes["ApiKeyAuth"]["name"] == "X-API-Key"
    for path, item in document["paths"].items():
        assert path in ROUTE_ROLES, f"{path}: give it a role in auth.py and docs/security.md"
        for method, operation in item.items():
            role = ROUTE_ROLES[path]
            assert operation["x-required-role"] == role.name.lower(), (path, method)
            if role is Role.OPEN:
                assert "security" not in operation and "401" not in operation["responses"]
            else:
                assert {"401", "429"} <= set(operation["responses"]), (path, method)
                assert ("403" in operation["responses"]) == (role is Role.ADMIN)


def test_server_no_key_leaves_the_server(guarded: Recorder) -> None:
    """Last: every response so far, the OpenAPI document, the metrics and the server's own
    output (stdout and stderr) hold none of the keys it was given or sent."""
    guarded.call("GET", "/openapi.json")
    guarded.call("GET", "/metrics")
    guarded.call("GET", "/logs/1000", REAL_ADMIN)
    assert len(guarded.seen) > 40
    said = [guarded.server.log()]
    for response in guarded.seen:
        said.append(response.text)
        said.extend(f"{name}: {value}" for name, value in response.headers.items())
    text = "\n".join(said)
    for key in SECRETS:
        assert key not in text
        assert key.encode().hex() not in text
    # What the log says instead: refusals, with a fingerprint of a configured key at most.
    log = guarded.server.log()
    assert "access control: API keys required (2 user, 1 admin); rate limit 1/s" in log
    user_print = hashlib.sha256(REAL_USER.encode()).hexdigest()[:8]
    assert f"403 (user key {user_print})" in log
    assert "401 (no key)" in log and "401 (unknown key)" in log
