"""Access control: API keys with two roles, the role each route needs, and rate limiting.

Off unless configured (docs/security.md). Keys are held as SHA-256 digests only, compared in
constant time; a refusal is logged with a short fingerprint of a known key at most, never the
key. Everything here runs on the event loop (one thread), before a route reads its body:
`AccessControl.check` costs a dictionary lookup for an open route, and a header scan, a hash
and a few comparisons for the others.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 16
# A key: visible ASCII, no comma (the separator). Whitespace separates keys too.
_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_SEPARATORS = re.compile(r"[,\s]+")
# The environment variables that hold keys themselves (the *_FILE ones hold paths).
USER_KEYS_ENV = "MODEL_SERVER_USER_API_KEYS"
ADMIN_KEYS_ENV = "MODEL_SERVER_ADMIN_API_KEYS"
KEY_ENV = (USER_KEYS_ENV, ADMIN_KEYS_ENV)
REALM = "model-server"
BEARER_SCHEME = "BearerAuth"
API_KEY_SCHEME = "ApiKeyAuth"
API_KEY_HEADER = "X-API-Key"


class Role(enum.IntEnum):
    """What a route needs; a key of a role may use every route of its role and below."""

    OPEN = 0
    USER = 1
    ADMIN = 2


# -- keys ------------------------------------------------------------------------------------


def digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def fingerprint(key_digest: bytes) -> str:
    """8 hex digits naming a key in logs: `printf %s "$KEY" | sha256sum | cut -c1-8`."""
    return key_digest[:4].hex()


def parse_keys(text: str, source: str) -> tuple[bytes, ...]:
    """The SHA-256 digests of the keys in `text`, separated by commas, spaces or newlines.

    ValueError names the source and the key's position, never the key itself.
    """
    digests = []
    for position, key in enumerate(filter(None, _SEPARATORS.split(text)), 1):
        if not _KEY.fullmatch(key):
            raise ValueError(f"{source}: key {position} has a character that is not visible ASCII")
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"{source}: key {position} has {len(key)} characters; at least "
                f"{MIN_KEY_LENGTH} are required (e.g. `openssl rand -hex 32`)"
            )
        digests.append(digest(key.encode("ascii")))
    return tuple(dict.fromkeys(digests))


class Credential:
    """One configured key: its digest, its role, its fingerprint. Hashed by identity (it keys
    its rate-limit bucket)."""

    __slots__ = ("digest", "fingerprint", "role")

    def __init__(self, key_digest: bytes, role: Role) -> None:
        self.digest = key_digest
        self.role = role
        self.fingerprint = fingerprint(key_digest)

    def __repr__(self) -> str:
        return f"Credential({self.role.name.lower()}, {self.fingerprint})"


class KeyRing:
    """The configured keys. A key in both lists is an admin key."""

    def __init__(self, user: Iterable[bytes] = (), admin: Iterable[bytes] = ()) -> None:
        admins = dict.fromkeys(admin)
        self.credentials = tuple(
            [Credential(d, Role.ADMIN) for d in admins]
            + [Credential(d, Role.USER) for d in dict.fromkeys(user) if d not in admins]
        )

    def __len__(self) -> int:
        return len(self.credentials)

    def count(self, role: Role) -> int:
        return sum(1 for c in self.credentials if c.role == role)

    def find(self, key: bytes) -> Credential | None:
        """The credential of `key`, if configured. Every digest is compared, in constant time,
        whatever matches: the time taken says nothing about which or how many."""
        presented = digest(key)
        found = None
        for credential in self.credentials:
            if hmac.compare_digest(credential.digest, presented):
                found = credential
        return found


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key of `Authorization: Bearer <key>`, else of `X-API-Key: <key>` (ASGI headers:
    lower-case names)."""
    bearer = api_key = None
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == b"bearer ":
                bearer = value[7:].strip()
        elif name == b"x-api-key":
            api_key = value.strip()
    return bearer or api_key or None


# -- routes ----------------------------------------------------------------------------------

# The API's documentation page (model_server/docs_page.py) and its static files: the same
# facts as /openapi.json, rendered; trying a call from it sends the key it is given.
DOCS_PATH = "/docs"
DOCS_ASSETS_PREFIX = "/docs/assets/"
# Probes, scraping, discovery: in memory, cheap, nothing about the traffic.
OPEN_PATHS = frozenset(
    {
        "/",
        "/health",
        "/metrics",
        "/openapi.json",
        DOCS_PATH,
        "/v1/models",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models",
    }
)
# The clients' own calls. /metrics/summary reads the prediction log (aggregates only): a key,
# so that nobody without one can make the server query its database.
USER_PATHS = frozenset({"/feedback", "/metrics/summary"})
# Model status and metadata (v1 status, v2 metadata and readiness, versioned or not).
_OPEN_MODEL = (
    re.compile(r"/v1/models/[^/:]+"),
    re.compile(r"/v2/models/[^/]+(?:/versions/[^/]+)?(?:/ready)?"),
)
# Inference (explain is not served, but it would be inference).
_USER_MODEL = (
    re.compile(r"/v1/models/[^/]+:(?:predict|explain)"),
    re.compile(r"/v2/models/[^/]+(?:/versions/[^/]+)?/infer"),
)
# Paths remembered; beyond, classified each time (a client may send any number of paths).
ROUTE_CACHE_SIZE = 1024


def required_role(path: str) -> Role:
    """The role a request path needs. Everything not listed as open or user, the raw
    prediction log (/logs), retraining (/retrain/...), KServe's model repository
    (/v2/repository/...) and any unknown path, needs an admin key: closed by default."""
    if len(path) > 1 and path.endswith("/"):  # Starlette redirects it to the path without
        path = path.rstrip("/") or "/"
    if path in OPEN_PATHS or path.startswith(DOCS_ASSETS_PREFIX):
        return Role.OPEN
    if path in USER_PATHS:
        return Role.USER
    if path.startswith(("/v1/models/", "/v2/models/")):
        if any(p.fullmatch(path) for p in _USER_MODEL):
            return Role.USER
        if any(p.fullmatch(path) for p in _OPEN_MODEL):
            return Role.OPEN
    return Role.ADMIN


class RoutePolicy:
    """`required_role`, remembered for the paths seen (at most ROUTE_CACHE_SIZE)."""

    def __init__(self, classify: Callable[[str], Role] = required_role) -> None:
        self._classify = classify
        self._cache: dict[str, Role] = {}

    def __call__(self, path: str) -> Role:
        role = self._cache.get(path)
        if role is None:
            role = self._classify(path)
            if len(self._cache) < ROUTE_CACHE_SIZE:
                self._cache[path] = role
        return role


# -- rate limiting ---------------------------------------------------------------------------

# Buckets kept when clients are addresses; beyond, idle (full) buckets are dropped first.
MAX_BUCKETS = 10_000


class TokenBuckets:
    """One token bucket per client: `rate` tokens a second, at most `burst`; a request takes
    one. In memory, so per process (per replica)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._max = max_buckets
        # client -> [tokens, time of the last update]
        self._buckets: dict[Hashable, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: Hashable) -> float:
        """0.0 if `client` may go now (a token is taken), else the seconds until it may."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._evict(now)
            self._buckets[client] = [self.burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _evict(self, now: float) -> None:
        """Drop the buckets that have refilled (forgetting them changes nothing); if every
        bucket is busy, the older half (a client dropped starts again with a full bucket)."""
        full = [
            client
            for client, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for client in full:
            del self._buckets[client]
        if len(self._buckets) >= self._max:
            for client in list(self._buckets)[: len(self._buckets) // 2 + 1]:
                del self._buckets[client]


def retry_after(seconds: float) -> int:
    """Whole seconds for Retry-After: rounded up, at least 1."""
    return max(1, math.ceil(seconds))


# -- the check -------------------------------------------------------------------------------


RefusalKind = Literal["missing_key", "unknown_key", "forbidden", "rate_limited"]
REFUSAL_KINDS: tuple[RefusalKind, ...] = get_args(RefusalKind)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: its status, message (the body's "error"), headers, and what
    the log line says about the key (a fingerprint of a configured key at most)."""

    status: int
    message: str
    headers: Mapping[str, str]
    reason: str
    kind: RefusalKind  # the metric's label, never anything of the key


MISSING_KEY = Refusal(
    401,
    f"an API key is required: send 'Authorization: Bearer <key>' or '{API_KEY_HEADER}: <key>'",
    {"WWW-Authenticate": f'Bearer realm="{REALM}"'},
    "no key",
    "missing_key",
)
UNKNOWN_KEY = Refusal(
    401,
    "the API key is not valid",
    {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
    "unknown key",
    "unknown_key",
)


class AccessSettings(Protocol):
    """The settings access control is built from (model_server.settings.ServerSettings)."""

    user_key_digests: tuple[bytes, ...]
    admin_key_digests: tuple[bytes, ...]
    rate_limit_per_second: float
    rate_limit_burst: int


class AccessControl:
    """Who may call which route, how often. `check` answers None (go on) or a Refusal."""

    def __init__(
        self,
        keys: KeyRing,
        limiter: TokenBuckets | None = None,
        policy: Callable[[str], Role] | None = None,
    ) -> None:
        self.keys = keys
        self.limiter = limiter
        self.policy = policy or RoutePolicy()
        self._auth = len(keys) > 0

    @classmethod
    def from_settings(cls, settings: AccessSettings) -> AccessControl:
        rate = settings.rate_limit_per_second
        return cls(
            KeyRing(settings.user_key_digests, settings.admin_key_digests),
            TokenBuckets(rate, settings.rate_limit_burst) if rate > 0 else None,
        )

    @property
    def auth(self) -> bool:
        """API keys are required (at least one is configured)."""
        return self._auth

    @property
    def active(self) -> bool:
        """Anything to check at all (if not, the server installs no middleware)."""
        return self._auth or self.limiter is not None

    def describe(self) -> str:
        """One line for the start-up log: counts and limits, no key material."""
        auth = (
            f"API keys required ({self.keys.count(Role.USER)} user, "
            f"{self.keys.count(Role.ADMIN)} admin)"
            if self._auth
            else "no API keys (every route open)"
        )
        limit = (
            "no rate limit"
            if self.limiter is None
            else f"rate limit {self.limiter.rate:g}/s, burst {self.limiter.burst:g}, per "
            + ("key" if self._auth else "client address")
        )
        return f"access control: {auth}; {limit}"

    def check(
        self, path: str, headers: Iterable[tuple[bytes, bytes]], client: str | None
    ) -> Refusal | None:
        required = self.policy(path)
        if required is Role.OPEN:
            return None
        who: Hashable
        if self._auth:
            key = presented_key(headers)
            if key is None:
                return MISSING_KEY
            credential = self.keys.find(key)
            if credential is None:
                return UNKNOWN_KEY
            if credential.role < required:
                return Refusal(
                    403,
                    f"this route needs an {required.name.lower()} key",
                    {},
                    f"{credential.role.name.lower()} key {credential.fingerprint}",
                    "forbidden",
                )
            who = credential
        else:
            who = client or "unknown"
        if self.limiter is not None:
            wait = self.limiter.take(who)
            if wait > 0.0:
                seconds = retry_after(wait)
                return Refusal(
                    429,
                    f"rate limit exceeded ({self.limiter.rate:g} requests per second, burst "
                    f"{self.limiter.burst:g}): retry in {seconds} s",
                    {"Retry-After": str(seconds)},
                    f"key {who.fingerprint}" if isinstance(who, Credential) else "client",
                    "rate_limited",
                )
        return None


# -- the OpenAPI document --------------------------------------------------------------------

ERROR_SCHEMA = "AccessError"
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def document_access(schema: dict[str, Any], access: AccessControl) -> None:
    """Declare the security schemes, each operation's role (`x-required-role`) and its 401,
    403 and 429 answers in an OpenAPI document (in place); with a rate limit but no keys, only
    the 429s. No key material, ever."""
    if not access.active:
        return
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})[ERROR_SCHEMA] = {
        "title": ERROR_SCHEMA,
        "type": "object",
        "properties": {"error": {"type": "string", "title": "Error"}},
        "required": ["error"],
    }
    if access.auth:
        components["securitySchemes"] = {
            BEARER_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key as a bearer token: `Authorization: Bearer <key>`.",
            },
            API_KEY_SCHEME: {
                "type": "apiKey",
                "in": "header",
                "name": API_KEY_HEADER,
                "description": f"An API key in the `{API_KEY_HEADER}` header.",
            },
        }
    ref = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}
    for path, item in schema.get("paths", {}).items():
        role = access.policy(path)
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            if access.auth:
                operation["x-required-role"] = role.name.lower()
            if role is Role.OPEN:
                continue
            responses = operation.setdefault("responses", {})
            if access.auth:
                operation["security"] = [{BEARER_SCHEME: []}, {API_KEY_SCHEME: []}]
                responses.setdefault(
                    "401",
                    {
                        "description": "no API key, or not a valid one",
                        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                        "content": ref,
                    },
                )
                if role is Role.ADMIN:
                    responses.setdefault(
                        "403",
                        {
                            "description": "a user key: this route needs an admin key",
                            "content": ref,
                        },
                    )
            if access.limiter is not None:
                responses.setdefault(
                    "429",
                    {
                        "description": "over the rate limit of the key (or client address)",
                        "headers": {
                            "Retry-After": {
                                "description": "seconds to wait",
                                "schema": {"type": "integer", "minimum": 1},
                            }
                        },
                        "content": ref,
                    },
                )
