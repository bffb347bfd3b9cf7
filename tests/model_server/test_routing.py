"""Canary routing: a stable share by request key, a random share without one."""

from __future__ import annotations

import hashlib

from kserve import InferInput, InferRequest

from model_server.model import CanaryRouter, key_share, request_key


def test_key_share_is_the_documented_hash() -> None:
    for key in ("a", "customer-42", "ünïcode"):
        digest = hashlib.sha256(key.encode()).digest()
        assert key_share(key) == int.from_bytes(digest[:8], "big") / 2**64 * 100
        assert 0 <= key_share(key) < 100


def test_keys_are_sticky_and_share_about_the_percent() -> None:
    router = CanaryRouter(10.0, draw=lambda: 0.5)
    keys = [f"k{i}" for i in range(5000)]
    first = [router.to_challenger(k) for k in keys]
    assert first == [router.to_challenger(k) for k in keys]
    assert 0.08 < sum(first) / len(keys) < 0.12
    assert CanaryRouter(0.0).to_challenger("k1") is False
    assert CanaryRouter(100.0).to_challenger("k1") is True


def test_without_a_key_the_draw_decides() -> None:
    assert CanaryRouter(10.0, draw=lambda: 0.05).to_challenger(None) is True
    assert CanaryRouter(10.0, draw=lambda: 0.10).to_challenger(None) is False


def test_the_key_comes_from_the_header_or_the_v2_parameter() -> None:
    request = InferRequest(
        "m", [InferInput("x", [1, 8], "FP64", [0.0] * 8)], parameters={"request_key": "p"}
    )
    assert request_key({"x-request-key": "h"}, request) == "h"
    assert request_key({}, request) == "p"
    assert request_key(None, {"instances": []}) is None
    assert request_key({"x-request-key": ""}, {"instances": []}) is None
