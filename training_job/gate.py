"""The promotion gate: does a new model version deserve @champion?"""

from __future__ import annotations

from dataclasses import dataclass

from housing.registry import CHALLENGER, CHAMPION


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: tuple[str, ...]

    @property
    def alias(self) -> str:
        return CHAMPION if self.promote else CHALLENGER


@dataclass(frozen=True)
class ReferenceScores:
    """R² of challenger and champion on the frozen reference set (training_job.reference)."""

    candidate_r2: float
    champion_r2: float
    tolerance: float


def gate(
    candidate_r2: float,
    champion_r2: float | None,
    test_r2_floor: float,
    min_improvement: float,
    reference: ReferenceScores | None = None,
) -> GateDecision:
    """Promote iff R² >= floor and (no champion, or R² >= champion's R² + margin, and the
    challenger's R² on the frozen reference set >= the champion's there - tolerance).

    The first two R² are measured on the same held-out rows, today's test split, which new
    data changes; the reference set is the yardstick new data cannot move, so labels gone bad
    cannot make a worse model look better. Every reason is kept, passing or not.
    """
    reasons = []
    passes_floor = candidate_r2 >= test_r2_floor
    reasons.append(
        f"test R² {candidate_r2:.4f} {'>=' if passes_floor else '<'} floor {test_r2_floor:.4f}"
    )
    if champion_r2 is None:
        beats = True
        reasons.append("no current champion")
    else:
        needed = champion_r2 + min_improvement
        beats = candidate_r2 >= needed
        reasons.append(
            f"test R² {candidate_r2:.4f} {'>=' if beats else '<'} champion's {champion_r2:.4f}"
            f" + margin {min_improvement:.4f}"
        )
    holds = True
    if reference is not None:
        allowed = reference.champion_r2 - reference.tolerance
        holds = reference.candidate_r2 >= allowed
        reasons.append(
            f"reference R² {reference.candidate_r2:.4f} {'>=' if holds else '<'} champion's "
            f"{reference.champion_r2:.4f} - tolerance {reference.tolerance:.4f}"
        )
    return GateDecision(promote=passes_floor and beats and holds, reasons=tuple(reasons))
