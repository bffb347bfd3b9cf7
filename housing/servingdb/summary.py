"""The JSON summary of the prediction log: counts, success rate, latency percentiles."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def latency_summary(latencies: Iterable[float]) -> dict[str, float | None]:
    values = sorted(latencies)
    return {name: percentile(values, q) for name, q in PERCENTILES.items()}


def _counts(total: int, ok: int) -> dict[str, Any]:
    return {
        "total": total,
        "ok": ok,
        "errors": total - ok,
        # None rather than a made-up 0 or 1 when nothing has been served yet.
        "success_rate": ok / total if total else None,
    }


def build_summary(
    counts: Iterable[tuple[str, int, int]],
    latencies: Sequence[tuple[str, float]],
) -> dict[str, Any]:
    """`counts` is (protocol, total, ok) per protocol; `latencies` is (protocol, latency_ms)
    of the most recent predictions (the latency window)."""
    by_protocol: dict[str, dict[str, Any]] = {}
    total = ok = 0
    for protocol, n, n_ok in counts:
        by_protocol[protocol] = _counts(n, n_ok)
        total += n
        ok += n_ok
    for protocol, entry in by_protocol.items():
        entry["latency_ms"] = latency_summary(v for p, v in latencies if p == protocol)
    return {
        **_counts(total, ok),
        "latency_ms": latency_summary(v for _, v in latencies),
        "latency_window": len(latencies),
        "by_protocol": dict(sorted(by_protocol.items())),
    }
