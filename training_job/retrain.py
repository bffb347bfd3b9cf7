"""`python -m training_job retrain`: decide, then (if go) run the pipeline, gate and promote.

Crash safety: the lease (in the serving database) expires if its holder dies, a run that
died is marked `abandoned` by the next one, and the pipeline moves an alias only as its very
last write, so a run killed at any point leaves the champion and the served model as they
were.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from housing.policy import Decision, Outcome, RetrainPolicy, decide
from housing.servingdb import RecordStore
from housing.servingdb.retrain import RetrainStore
from training_job import failpoints
from training_job.landing import import_new, list_landing
from training_job.params import REFERENCE, TUNED, Params
from training_job.pipeline import Layout, run_pipeline
from training_job.settings import TrainingSettings
from training_job.signals import gather
from training_job.tracking import connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainResult:
    decision: Decision
    outcome: str
    decision_id: int | None = None
    model_version: str | None = None
    promoted: bool = False
    signals: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.decision.as_dict(),
            "outcome": self.outcome,
            "decision_id": self.decision_id,
            "model_version": self.model_version,
            "promoted": self.promoted,
            "signals": self.signals,
            "error": self.error,
        }


class _Heartbeat(threading.Thread):
    """Renews the lease every third of its TTL while the run lasts."""

    def __init__(self, store: RetrainStore, holder: str, ttl: float) -> None:
        super().__init__(daemon=True, name="retrain-lease")
        self.store, self.holder, self.ttl = store, holder, ttl
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.ttl / 3):
            try:
                self.store.renew(self.holder, self.ttl)
            except Exception:  # a missed heartbeat is retried; the lease has slack
                log.warning("lease renewal failed", exc_info=True)


def retrain(
    settings: TrainingSettings,
    params: Params,
    *,
    force: bool = False,
    dry_run: bool = False,
    source: str = "cli",
) -> RetrainResult:
    workspace = settings.workspace
    raw = workspace / "data/raw"
    records = RecordStore(settings.resolved_serving_database_url)
    records.migrate()
    store = RetrainStore(records)
    policy = RetrainPolicy.model_validate(store.policy())
    connect(settings)

    if dry_run:
        pending = list_landing(settings.resolved_landing_url, workspace)
        log.info("dry run: %d file(s) in the landing location", len(pending))
    else:
        # DVC hashes each new file as it imports it; the digest below then sees the change.
        import_new(settings.resolved_landing_url, workspace)
    model_name = params.registration.model_name
    signals = gather(settings, model_name, raw, records, store, policy.drift_alpha)
    decision = decide(signals, policy, force=force)
    record: dict[str, Any] = {
        "source": source,
        "forced": force,
        "go": decision.go,
        "triggers": list(decision.triggers),
        "reasons": list(decision.reasons),
        "signals": signals.as_dict(),
        "policy": policy.model_dump(),
    }
    if dry_run:
        return RetrainResult(decision, "dry_run", signals=signals.as_dict())
    if not decision.go:
        decision_id = store.record_decision(**record, outcome=Outcome.SKIPPED)
        return RetrainResult(decision, Outcome.SKIPPED, decision_id, signals=signals.as_dict())

    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if store.acquire(holder, settings.lease_ttl_seconds) is None:
        current = store.lease() or {}
        decision_id = store.record_decision(**record, outcome=Outcome.ALREADY_RUNNING)
        log.warning("a retraining run is already going (%s)", current.get("holder"))
        return RetrainResult(
            decision,
            Outcome.ALREADY_RUNNING,
            decision_id,
            signals=signals.as_dict(),
            error=f"a retraining run is already going: {current.get('holder')} "
            f"since {current.get('acquired_at')}",
        )

    decision_id = store.record_decision(**record, outcome=Outcome.RUNNING)
    store.renew(holder, settings.lease_ttl_seconds, decision_id)
    heartbeat = _Heartbeat(store, holder, settings.lease_ttl_seconds)
    heartbeat.start()
    try:
        failpoints.hit("retrain_started")
        layout = Layout(settings.state_dir / "retrain")
        registration = run_pipeline(
            raw, layout, params, settings, workspace / TUNED, workspace / REFERENCE
        )
    except Exception as exc:
        store.finish_decision(decision_id, Outcome.FAILED, None, error=str(exc)[:2000])
        raise
    finally:
        heartbeat.stopped.set()
        heartbeat.join()
        store.release(holder)
        records.close()
    outcome = Outcome.PROMOTED if registration.promoted else Outcome.NOT_PROMOTED
    store.finish_decision(decision_id, outcome, registration.version)
    return RetrainResult(
        decision,
        outcome,
        decision_id,
        model_version=registration.version,
        promoted=registration.promoted,
        signals=signals.as_dict(),
    )
