"""The retraining decision: each trigger, each blocker, and their reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from housing.drift import FeatureDrift
from housing.policy import RetrainPolicy, Signals, decide

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
POLICY = RetrainPolicy()


def drift(feature: str, psi: float = 0.01, ks: float = 0.02) -> dict[str, FeatureDrift]:
    """One feature's drift (KS critical value 0.06: that of 1,000 rows against 2,000)."""
    return {feature: FeatureDrift(feature, psi=psi, ks=ks, ks_critical=0.06, window=1000)}


def signals(**changes: object) -> Signals:
    base: dict[str, object] = {
        "now": NOW,
        "data_digest": "aaa",
        "champion_version": "3",
        "champion_digest": "aaa",
        "champion_test_r2": 0.85,
        "live_r2": 0.84,
        "live_samples": 500,
        "drift": drift("MedInc") | drift("Latitude"),
        "last_retrain_at": NOW - timedelta(days=1),
        "champion_since": NOW - timedelta(days=1),
    }
    return Signals(**(base | changes))  # type: ignore[arg-type]


def test_healthy_system_is_left_alone() -> None:
    decision = decide(signals(), POLICY)
    assert not decision.go and decision.triggers == ()
    assert "no trigger fired" in decision.reasons


@pytest.mark.parametrize(
    ("changes", "trigger", "reason"),
    [
        ({"data_digest": "bbb"}, "data_changed", "differs from the champion's"),
        ({"champion_version": None}, "no_champion", "no @champion"),
        ({"live_r2": 0.42}, "live_error_floor", "live R² 0.420 < floor 0.500"),
        ({"live_r2": 0.70}, "live_error_degraded", "< offline 0.850 - margin 0.100"),
        ({"drift": drift("Latitude", psi=3.1) | drift("MedInc")}, "drift", "Latitude PSI 3.100"),
        # A shift too small for PSI, found by the KS test (MedInc x 1.1: docs/retraining.md).
        (
            {"drift": drift("Latitude") | drift("MedInc", psi=0.06, ks=0.09)},
            "drift",
            "MedInc KS 0.090 > 0.060",
        ),
        ({"champion_since": NOW - timedelta(days=8)}, "interval", "192.0 h old"),
    ],
)
def test_each_trigger(changes: dict[str, object], trigger: str, reason: str) -> None:
    decision = decide(signals(**changes), POLICY)
    assert decision.go and trigger in decision.triggers
    assert any(reason in r for r in decision.reasons), decision.reasons


def test_data_a_rejected_challenger_was_trained_on_is_not_new() -> None:
    decision = decide(signals(data_digest="bbb", latest_digest="bbb", latest_version="4"), POLICY)
    assert not decision.go
    assert any("already trained on by version 4" in r for r in decision.reasons)


def test_live_error_needs_enough_feedback() -> None:
    decision = decide(signals(live_r2=0.1, live_samples=20), POLICY)
    assert not decision.go
    assert any("20 predictions with feedback (need 200)" in r for r in decision.reasons)


def test_disabled_blocks_unless_forced() -> None:
    policy = RetrainPolicy(enabled=False)
    blocked = decide(signals(data_digest="bbb"), policy)
    assert not blocked.go and "retraining is disabled" in blocked.reasons
    forced = decide(signals(), policy, force=True)
    assert forced.go and forced.triggers == ("forced",)


def test_minimum_interval_blocks_unless_forced() -> None:
    recent = signals(data_digest="bbb", last_retrain_at=NOW - timedelta(hours=1))
    blocked = decide(recent, POLICY)
    assert not blocked.go
    assert any("< minimum interval 6 h" in r for r in blocked.reasons)
    assert decide(recent, POLICY, force=True).go


def test_policy_rejects_bad_values_naming_the_field() -> None:
    with pytest.raises(ValueError, match="r2_floor"):
        RetrainPolicy(r2_floor=3)
    with pytest.raises(ValueError, match="unknown"):
        RetrainPolicy.model_validate({"unknown": 1})
    # Values JSON cannot hold exactly, or at all, would make the stored policy unreadable.
    with pytest.raises(ValueError, match="min_interval_hours"):
        RetrainPolicy(min_interval_hours=float("inf"))
    with pytest.raises(ValueError, match="max_age_hours"):
        RetrainPolicy(max_age_hours=float("nan"))
    with pytest.raises(ValueError, match="min_feedback"):
        RetrainPolicy(min_feedback=10**400)
