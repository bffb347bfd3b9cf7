"""`python -m training_job promote-challenger`: promote @challenger if it wins on live error.

With the server in shadow or canary mode, both versions' predictions get feedback in the
serving database. This compares their live R² over the newest LIVE_WINDOW predictions with
feedback: the challenger wins if both have at least the policy's `min_feedback` of them and
the challenger's R² is at least the champion's plus the policy's `degradation_margin` (the
same margin that says the champion has degraded). Every comparison is a recorded decision
(source `live_comparison`): `promoted` (@champion moved), `not_promoted` (it lost), or
`skipped` (nothing to compare: no distinct challenger, or too little feedback).

The run holds the retraining lease, so it never moves @champion under a running retrain;
moving the alias is its last write to the registry.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from housing.policy import Outcome, RetrainPolicy
from housing.registry import CHALLENGER, CHAMPION
from housing.servingdb import RecordStore
from housing.servingdb.retrain import RetrainStore
from training_job.settings import TrainingSettings
from training_job.signals import live_r2
from training_job.tracking import connect

log = logging.getLogger(__name__)

SOURCE = "live_comparison"
TRIGGER = "challenger_wins"


@dataclass(frozen=True)
class LiveScore:
    """A version's live R² over its newest predictions with feedback."""

    version: str
    r2: float | None
    samples: int


@dataclass(frozen=True)
class Comparison:
    go: bool
    judged: bool  # both versions had enough feedback to be compared
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class PromotionResult:
    outcome: str  # promoted | not_promoted | skipped | already_running | dry_run
    go: bool
    reasons: tuple[str, ...]
    champion: LiveScore | None = None
    challenger: LiveScore | None = None
    decision_id: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(champion: LiveScore, challenger: LiveScore, policy: RetrainPolicy) -> Comparison:
    """Does the challenger beat the champion on live R² by the policy's margin?"""
    reasons: list[str] = []
    for role, score in (("champion", champion), ("challenger", challenger)):
        if score.r2 is None or score.samples < policy.min_feedback:
            reasons.append(
                f"{role} version {score.version} not judged: {score.samples} predictions with "
                f"feedback (need {policy.min_feedback})"
            )
    if reasons:
        return Comparison(go=False, judged=False, reasons=tuple(reasons))
    assert champion.r2 is not None and challenger.r2 is not None
    margin = policy.degradation_margin
    wins = challenger.r2 >= champion.r2 + margin
    reasons.append(
        f"challenger version {challenger.version} live R² {challenger.r2:.3f} "
        f"{'>=' if wins else '<'} champion version {champion.version}'s {champion.r2:.3f} "
        f"+ margin {margin:.3f} ({challenger.samples} and {champion.samples} predictions "
        "with feedback)"
    )
    return Comparison(go=wins, judged=True, reasons=tuple(reasons))


def _alias(client: MlflowClient, model_name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def promote_challenger(
    settings: TrainingSettings, model_name: str, *, dry_run: bool = False
) -> PromotionResult:
    records = RecordStore(settings.resolved_serving_database_url)
    records.migrate()
    store = RetrainStore(records)
    holder = f"promote:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    leased = False
    try:
        policy = RetrainPolicy.model_validate(store.policy())
        connect(settings)
        client = MlflowClient()
        if not dry_run:
            if store.acquire(holder, settings.lease_ttl_seconds) is None:
                current = store.lease() or {}
                reason = (
                    f"a retraining run is already going: {current.get('holder')} "
                    f"since {current.get('acquired_at')}"
                )
                decision_id = store.record_decision(
                    source=SOURCE,
                    forced=False,
                    go=False,
                    triggers=[],
                    reasons=[reason],
                    signals={},
                    policy=policy.model_dump(),
                    outcome=Outcome.ALREADY_RUNNING,
                )
                return PromotionResult(
                    Outcome.ALREADY_RUNNING, False, (reason,), decision_id=decision_id, error=reason
                )
            leased = True
        # Read after taking the lease: no retrain moves them meanwhile.
        champion_version = _alias(client, model_name, CHAMPION)
        challenger_version = _alias(client, model_name, CHALLENGER)
        return _decide(
            store,
            records,
            client,
            settings,
            model_name,
            policy,
            champion_version,
            challenger_version,
            dry_run=dry_run,
        )
    finally:
        if leased:
            store.release(holder)
        records.close()


def _decide(
    store: RetrainStore,
    records: RecordStore,
    client: MlflowClient,
    settings: TrainingSettings,
    model_name: str,
    policy: RetrainPolicy,
    champion_version: str | None,
    challenger_version: str | None,
    *,
    dry_run: bool,
) -> PromotionResult:
    record: dict[str, Any] = {
        "source": SOURCE,
        "forced": False,
        "policy": policy.model_dump(),
    }
    if champion_version is None or challenger_version in (None, champion_version):
        reason = (
            f"no @{CHAMPION} to compare with"
            if champion_version is None
            else f"no @{CHALLENGER} distinct from @{CHAMPION} (version {champion_version})"
        )
        signals = {"champion_version": champion_version, "challenger_version": challenger_version}
        if dry_run:
            return PromotionResult("dry_run", False, (reason,))
        decision_id = store.record_decision(
            **record,
            go=False,
            triggers=[],
            reasons=[reason],
            signals=signals,
            outcome=Outcome.SKIPPED,
        )
        return PromotionResult(Outcome.SKIPPED, False, (reason,), decision_id=decision_id)
    assert challenger_version is not None

    champion = LiveScore(
        champion_version, *live_r2(records, champion_version, settings.live_window)
    )
    challenger = LiveScore(
        challenger_version, *live_r2(records, challenger_version, settings.live_window)
    )
    comparison = compare(champion, challenger, policy)
    record |= {
        "go": comparison.go,
        "triggers": [TRIGGER] if comparison.go else [],
        "reasons": list(comparison.reasons),
        "signals": {"champion": asdict(champion), "challenger": asdict(challenger)},
    }
    result = PromotionResult(
        "dry_run", comparison.go, comparison.reasons, champion=champion, challenger=challenger
    )
    if dry_run:
        return result
    if not comparison.go:
        outcome = Outcome.NOT_PROMOTED if comparison.judged else Outcome.SKIPPED
        decision_id = store.record_decision(**record, outcome=outcome)
        if comparison.judged:
            store.finish_decision(decision_id, outcome, challenger_version)
        log.info("challenger %s not promoted: %s", challenger_version, "; ".join(result.reasons))
        return PromotionResult(
            outcome, False, comparison.reasons, champion, challenger, decision_id=decision_id
        )

    try:
        # The last write to the registry: the server follows @champion from here.
        client.set_registered_model_alias(model_name, CHAMPION, challenger_version)
    except Exception as exc:
        decision_id = store.record_decision(**record, outcome=Outcome.FAILED)
        store.finish_decision(
            decision_id, Outcome.FAILED, challenger_version, error=str(exc)[:2000]
        )
        raise
    # Recorded once done, not as `running` first: a promotion is not a retraining run, and a
    # started_at would hold the next retrain back by the policy's minimum interval.
    decision_id = store.record_decision(**record, outcome=Outcome.PROMOTED)
    store.finish_decision(decision_id, Outcome.PROMOTED, challenger_version)
    log.info(
        "version %s of %s is @%s: %s",
        challenger_version,
        model_name,
        CHAMPION,
        "; ".join(comparison.reasons),
    )
    return PromotionResult(
        Outcome.PROMOTED, True, comparison.reasons, champion, challenger, decision_id=decision_id
    )
