"""Cost of access control on the request path: one `AccessControl.check` of a user key on the
prediction route (key lookup by digest, role, token bucket), best of 5 x 20,000 calls.

    python bench/access_check.py

The single-row prediction path costs ~450-850 µs of CPU (bench/README.md): the check must stay
a small part of it.
"""

from __future__ import annotations

import time

from model_server.auth import AccessControl, KeyRing, TokenBuckets, digest

USER, ADMIN = "u" * 32, "a" * 32
ROUTE = "/v1/models/california-housing:predict"
HEADERS = [
    (b"host", b"127.0.0.1:8080"),
    (b"accept", b"*/*"),
    (b"content-type", b"application/json"),
    (b"content-length", b"80"),
    (b"authorization", f"Bearer {USER}".encode()),
]


def main(runs: int = 20_000, rounds: int = 5) -> None:
    keys = KeyRing([digest(USER.encode()), digest(b"o" * 32)], [digest(ADMIN.encode())])
    access = AccessControl(keys, TokenBuckets(1e9, 10**9))
    assert access.check(ROUTE, HEADERS, "127.0.0.1") is None  # the key is accepted
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(runs):
            access.check(ROUTE, HEADERS, "127.0.0.1")
        best = min(best, (time.perf_counter() - started) / runs)
    print(
        f"access check (user key, rate limit on): {best * 1e6:.2f} µs per request, "
        f"best of {rounds} x {runs}"
    )


if __name__ == "__main__":
    main()
