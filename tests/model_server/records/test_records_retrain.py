"""RetrainStore's reads for the server: the policy updated in one transaction, and the
overview the retraining gauges come from."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from housing.servingdb import RecordStore
from housing.servingdb.retrain import RetrainStore


@pytest.fixture
def retrain(store: RecordStore) -> Iterator[RetrainStore]:
    yield RetrainStore(store)


def decide(retrain: RetrainStore, outcome: str, go: bool = True) -> int:
    running = outcome == "running" or outcome in ("promoted", "not_promoted", "failed")
    decision = retrain.record_decision(
        source="cron", forced=False, go=go, triggers=[], reasons=[], signals={}, policy={},
        outcome="running" if running else outcome,
    )  # fmt: skip
    if running and outcome != "running":
        retrain.finish_decision(decision, outcome, "3")
    return decision


def test_update_policy_reads_changes_and_writes_in_one_go(retrain: RetrainStore) -> None:
    assert retrain.update_policy(lambda p: {**p, "r2_floor": 0.6}) == {"r2_floor": 0.6}
    assert retrain.update_policy(lambda p: {**p, "enabled": False}) == {
        "r2_floor": 0.6,
        "enabled": False,
    }

    def refuse(policy: dict[str, object]) -> dict[str, object]:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        retrain.update_policy(refuse)
    assert retrain.policy() == {"r2_floor": 0.6, "enabled": False}


def test_overview_of_an_empty_history(retrain: RetrainStore) -> None:
    overview = retrain.overview()
    assert overview.lease is None and overview.outcomes == {}
    assert overview.last_decided_at is None and overview.last_concluded_at is None
    assert overview.last_finished_outcome is None


def test_overview_counts_outcomes_and_finds_the_newest(retrain: RetrainStore) -> None:
    decide(retrain, "promoted")
    decide(retrain, "skipped", go=False)
    decide(retrain, "not_promoted")
    decide(retrain, "already_running")  # went, refused by the lease: not a finished run
    overview = retrain.overview()
    assert overview.outcomes == {
        "promoted": 1, "skipped": 1, "not_promoted": 1, "already_running": 1,
    }  # fmt: skip
    newest = retrain.decisions(10)
    concluded = next(d for d in newest if d["outcome"] == "not_promoted")
    assert overview.last_concluded_at is not None
    assert overview.last_concluded_at.isoformat() == concluded["finished_at"]
    assert overview.last_decided_at is not None
    assert overview.last_decided_at.isoformat() == newest[0]["decided_at"]
    assert overview.last_finished_outcome == "not_promoted"
    decide(retrain, "running")
    assert retrain.acquire("me", 60) is not None
    overview = retrain.overview()
    assert overview.lease is not None and overview.lease["holder"] == "me"
    assert overview.last_finished_outcome == "not_promoted"  # the running one has not ended
