"""The promotion gate."""

from __future__ import annotations

from training_job.gate import ReferenceScores, gate


def test_first_model_above_floor_is_promoted() -> None:
    decision = gate(0.84, None, test_r2_floor=0.5, min_improvement=0.002)
    assert decision.promote and decision.alias == "champion"
    assert "no current champion" in decision.reasons


def test_first_model_below_floor_is_not_promoted() -> None:
    decision = gate(0.41, None, test_r2_floor=0.5, min_improvement=0.002)
    assert not decision.promote and decision.alias == "challenger"
    assert "test R² 0.4100 < floor 0.5000" in decision.reasons


def test_better_by_margin_is_promoted() -> None:
    assert gate(0.85, 0.84, test_r2_floor=0.5, min_improvement=0.002).promote


def test_equal_or_marginally_better_is_not_promoted() -> None:
    same = gate(0.84, 0.84, test_r2_floor=0.5, min_improvement=0.002)
    assert not same.promote
    assert "test R² 0.8400 < champion's 0.8400 + margin 0.0020" in same.reasons
    assert not gate(0.8415, 0.84, test_r2_floor=0.5, min_improvement=0.002).promote


def test_worse_is_not_promoted_even_above_floor() -> None:
    assert not gate(0.70, 0.84, test_r2_floor=0.5, min_improvement=0.0).promote


def test_better_than_a_bad_champion_but_below_floor_is_not_promoted() -> None:
    decision = gate(0.45, 0.30, test_r2_floor=0.5, min_improvement=0.002)
    assert not decision.promote
    assert len(decision.reasons) == 2


def test_worse_on_the_reference_set_is_not_promoted_whatever_the_test_rows_say() -> None:
    """Scenario 4's shape: the polluted test rows favour the challenger, the frozen reference
    rows do not."""
    reference = ReferenceScores(candidate_r2=0.79, champion_r2=0.87, tolerance=0.01)
    decision = gate(0.495, 0.474, test_r2_floor=0.4, min_improvement=0.002, reference=reference)
    assert not decision.promote and decision.alias == "challenger"
    assert "reference R² 0.7900 < champion's 0.8700 - tolerance 0.0100" in decision.reasons


def test_within_the_tolerance_on_the_reference_set_is_promoted() -> None:
    reference = ReferenceScores(candidate_r2=0.865, champion_r2=0.87, tolerance=0.01)
    decision = gate(0.88, 0.86, test_r2_floor=0.5, min_improvement=0.002, reference=reference)
    assert decision.promote
    assert "reference R² 0.8650 >= champion's 0.8700 - tolerance 0.0100" in decision.reasons
