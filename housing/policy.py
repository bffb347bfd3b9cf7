"""The retraining decision: one pure function from signals and policy to go / skip.

Every trigger and every blocker is evaluated and kept as a reason, whether or not the run
goes, so that a recorded decision explains itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from housing.drift import DEFAULT_ALPHA, FeatureDrift

# The windows the signals are computed over, the same for the server's gauges and the job's
# decision (TRAINING_ and MODEL_SERVER_ LIVE_WINDOW / DRIFT_WINDOW), so that both judge alike.
DEFAULT_WINDOW = 1000
LiveWindow = Annotated[int, Field(ge=10, le=10_000)]
"""Newest predictions with feedback that live error is computed over."""
DriftWindow = Annotated[int, Field(ge=10, le=100_000)]
"""Newest validated inputs that input drift is computed over."""


class Outcome(StrEnum):
    """What became of a recorded decision (the serving database's retrain_decisions.outcome,
    the server's model_server_retrain_decisions_total{outcome})."""

    SKIPPED = "skipped"
    """No trigger fired, or a blocker held: nothing ran."""
    ALREADY_RUNNING = "already_running"
    """Another run holds the lease."""
    RUNNING = "running"
    """Went; the pipeline is running."""
    PROMOTED = "promoted"
    """Went, and the new version became @champion."""
    NOT_PROMOTED = "not_promoted"
    """Went, and the gate kept the champion."""
    FAILED = "failed"
    """Went, and the run raised."""
    ABANDONED = "abandoned"
    """Went, and the run died: its lease expired (marked by the next run)."""


# A run that went and is over; and of those, the ones whose gate judged the model.
FINISHED: tuple[Outcome, ...] = (
    Outcome.PROMOTED,
    Outcome.NOT_PROMOTED,
    Outcome.FAILED,
    Outcome.ABANDONED,
)
CONCLUDED: tuple[Outcome, ...] = (Outcome.PROMOTED, Outcome.NOT_PROMOTED)


class RetrainPolicy(BaseModel):
    """Thresholds of the decision. Stored in the serving database, edited via the server's
    POST /retrain/config; these defaults apply until someone sets them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = True
    r2_floor: float = Field(default=0.5, ge=-1.0, le=1.0)
    """Retrain when live R² (from feedback) falls below this."""
    degradation_margin: float = Field(default=0.1, ge=0.0, le=2.0)
    """... or below the champion's offline test R² minus this."""
    min_feedback: int = Field(default=200, ge=1, le=2**53 - 1)  # exact in JSON
    """Live error counts only once this many recent predictions have feedback."""
    drift_threshold: float = Field(default=0.2, gt=0.0)
    """Retrain when any feature's PSI exceeds this (0.1 moderate, 0.2 significant shift)."""
    drift_alpha: float = Field(default=DEFAULT_ALPHA, gt=0.0, lt=1.0)
    """... or when a two-sample KS test rejects "no shift" for any feature at this family-wise
    false-alarm rate (alpha / features each, Bonferroni; housing.drift)."""
    max_age_hours: float = Field(default=168.0, gt=0.0)
    """Retrain when the champion is older than this (hours)."""
    min_interval_hours: float = Field(default=6.0, ge=0.0)
    """Never start two retrains closer than this, unless forced."""


@dataclass(frozen=True)
class Signals:
    """What the decision looks at, gathered by training_job.signals."""

    now: datetime
    data_digest: str
    champion_version: str | None = None
    champion_digest: str | None = None
    # Digest and version of the newest registered version, promoted or not: data a challenger
    # was already trained on is not new, even if the champion was trained on older data.
    latest_digest: str | None = None
    latest_version: str | None = None
    champion_test_r2: float | None = None
    live_r2: float | None = None
    live_samples: int = 0
    # By feature, judged at the policy's drift_alpha (training_job.signals).
    drift: dict[str, FeatureDrift] = field(default_factory=dict)
    last_retrain_at: datetime | None = None
    champion_since: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("now", "last_retrain_at", "champion_since"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


@dataclass(frozen=True)
class Decision:
    go: bool
    triggers: tuple[str, ...]
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"go": self.go, "triggers": list(self.triggers), "reasons": list(self.reasons)}


def decide(signals: Signals, policy: RetrainPolicy, force: bool = False) -> Decision:
    triggers: list[str] = []
    reasons: list[str] = []

    if signals.champion_version is None:
        triggers.append("no_champion")
        reasons.append("the registry has no @champion")
    elif signals.data_digest != signals.champion_digest:
        if signals.data_digest == signals.latest_digest:
            reasons.append(
                f"data digest {signals.data_digest[:12]} was already trained on by version "
                f"{signals.latest_version}, which was not promoted"
            )
        else:
            triggers.append("data_changed")
            reasons.append(
                f"data digest {signals.data_digest[:12]} differs from the champion's "
                f"{(signals.champion_digest or 'none')[:12]}"
            )

    if signals.live_r2 is None or signals.live_samples < policy.min_feedback:
        reasons.append(
            f"live error not judged: {signals.live_samples} predictions with feedback "
            f"(need {policy.min_feedback})"
        )
    else:
        if signals.live_r2 < policy.r2_floor:
            triggers.append("live_error_floor")
            reasons.append(f"live R² {signals.live_r2:.3f} < floor {policy.r2_floor:.3f}")
        if (
            signals.champion_test_r2 is not None
            and signals.live_r2 < signals.champion_test_r2 - policy.degradation_margin
        ):
            triggers.append("live_error_degraded")
            reasons.append(
                f"live R² {signals.live_r2:.3f} < offline {signals.champion_test_r2:.3f} "
                f"- margin {policy.degradation_margin:.3f}"
            )

    # The same rule as the server's gauges and the alert: KS above its critical value, or PSI
    # above the threshold, on any feature.
    tested = sorted(d for d in signals.drift.values() if d.drifted)
    shifted = sorted(d for d in signals.drift.values() if d.psi > policy.drift_threshold)
    if tested or shifted:
        triggers.append("drift")
    if tested:
        reasons.append(
            f"drift (KS test, family-wise alpha {policy.drift_alpha:g}): "
            + ", ".join(f"{d.feature} KS {d.ks:.3f} > {d.ks_critical:.3f}" for d in tested)
        )
    if shifted:
        reasons.append(
            f"drift above PSI {policy.drift_threshold:g}: "
            + ", ".join(f"{d.feature} PSI {d.psi:.3f}" for d in shifted)
        )

    age_from = signals.champion_since
    if age_from is not None:
        age = signals.now - age_from
        if age >= timedelta(hours=policy.max_age_hours):
            triggers.append("interval")
            reasons.append(
                f"champion is {age.total_seconds() / 3600:.1f} h old "
                f"(max {policy.max_age_hours:g} h)"
            )

    if force:
        triggers.append("forced")
        reasons.append("forced by the operator")

    blockers: list[str] = []
    if not policy.enabled and not force:
        blockers.append("retraining is disabled")
    if signals.last_retrain_at is not None and not force:
        since = signals.now - signals.last_retrain_at
        if since < timedelta(hours=policy.min_interval_hours):
            blockers.append(
                f"last retrain {since.total_seconds() / 3600:.2f} h ago "
                f"< minimum interval {policy.min_interval_hours:g} h"
            )
    if not triggers:
        reasons.append("no trigger fired")
    reasons.extend(blockers)
    return Decision(
        go=bool(triggers) and not blockers, triggers=tuple(triggers), reasons=tuple(reasons)
    )
