"""`promote-challenger`: @challenger replaces @champion only if it wins on live error, and every
comparison is a recorded decision (source live_comparison).

On a private copy of the session's registry with the decision tree registered as version 2,
and a serving database holding both versions' predictions of real test rows with feedback.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from housing.contract import FEATURES, TARGET
from housing.policy import RetrainPolicy
from housing.servingdb import RecordStore, RequestRecord
from housing.servingdb.models import prediction_ids
from housing.servingdb.retrain import RetrainStore
from tests.support.pipeline import pipeline_env, run_training_job
from training_job.promote import LiveScore, compare, promote_challenger
from training_job.settings import TrainingSettings

MODEL = "california-housing"
LABELLED = 150
POLICY = RetrainPolicy(min_feedback=100)


# -- the comparison itself ------------------------------------------------------------------


def test_the_challenger_must_beat_the_champion_by_the_margin() -> None:
    champion = LiveScore("1", 0.70, 500)
    wins = compare(champion, LiveScore("2", 0.81, 500), POLICY)
    assert wins.go and wins.judged
    assert "live R² 0.810 >= champion version 1's 0.700 + margin 0.100" in wins.reasons[0]
    close = compare(champion, LiveScore("2", 0.79, 500), POLICY)
    assert not close.go and close.judged
    assert "0.790 < champion version 1's 0.700" in close.reasons[0]


def test_too_little_feedback_is_not_judged() -> None:
    result = compare(LiveScore("1", 0.5, 500), LiveScore("2", 0.9, 20), POLICY)
    assert not result.go and not result.judged
    assert result.reasons == (
        "challenger version 2 not judged: 20 predictions with feedback (need 100)",
    )


# -- against a registry and a serving database ------------------------------------------------


class Loop:
    def __init__(self, trained: Any, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.state = root / "state"
        self.state.mkdir()
        with (
            sqlite3.connect(trained.state_dir / "mlflow.db") as source,
            sqlite3.connect(self.state / "mlflow.db") as copy,
        ):
            source.backup(copy)
        self.tracking_uri = f"sqlite:///{self.state / 'mlflow.db'}"
        self.database_url = f"sqlite:///{self.state / 'serving.db'}"
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self.tree = self._register("decision_tree")
        models = trained.workspace / "models" / "candidates"
        rows = pd.read_parquet(trained.workspace / "data" / "prepared" / "test.parquet")
        rows = rows.sample(LABELLED, random_state=11)
        x, y = rows[list(FEATURES)], rows[TARGET].to_numpy()
        with RecordStore(self.database_url) as records:
            records.migrate()
            for version, name in (("1", "lightgbm"), (self.tree, "decision_tree")):
                predicted = joblib.load(models / f"{name}.joblib").predict(x)
                record = RequestRecord(
                    id=uuid.uuid4().hex,
                    request_id="r",
                    created_at=datetime.now(UTC),
                    model_name=MODEL,
                    model_version=version,
                    protocol="v1",
                    features=list(FEATURES),
                    inputs=x.to_numpy(dtype="float64"),
                    outputs=predicted.astype("float64"),
                    latency_ms=1.0,
                    status=200,
                    error=None,
                )
                records.write_batch([record])
                ids = prediction_ids(record.id, len(y))
                for prediction_id, truth in zip(ids, y, strict=True):
                    records.add_feedback(prediction_id, float(truth))

    def _register(self, candidate: str) -> str:
        [run] = self.client.search_runs(
            [e.experiment_id for e in self.client.search_experiments()],
            filter_string=f"tags.candidate = '{candidate}'",
        )
        model_uri = run.data.tags["model_uri"]
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.tracking_uri)  # logged models resolve through it
        try:
            version = self.client.create_model_version(
                MODEL, model_uri, run.info.run_id, model_id=model_uri.removeprefix("models:/")
            )
        finally:
            mlflow.set_tracking_uri(previous)
        return str(version.version)

    def aliases(self) -> dict[str, str]:
        model = self.client.get_registered_model(MODEL)
        return {alias: str(version) for alias, version in model.aliases.items()}

    def env(self) -> dict[str, str]:
        return pipeline_env(self.state, self.tracking_uri) | {
            "TRAINING_SERVING_DATABASE_URL": self.database_url
        }

    def store(self) -> tuple[RecordStore, RetrainStore]:
        records = RecordStore(self.database_url)
        return records, RetrainStore(records)

    def set_policy(self, **values: Any) -> None:
        records, store = self.store()
        store.set_policy(values)
        records.close()

    def decisions(self) -> list[dict[str, Any]]:
        records, store = self.store()
        try:
            return store.decisions(100)
        finally:
            records.close()


@pytest.fixture
def loop(trained_registry: Any, tmp_path: Path) -> Loop:
    return Loop(trained_registry, tmp_path / "loop")


@pytest.fixture
def in_process(loop: Loop, monkeypatch: pytest.MonkeyPatch) -> Iterator[TrainingSettings]:
    """Settings for calling promote_challenger here; MLflow's global URI put back after."""
    for name, value in loop.env().items():
        if name.startswith(("MLFLOW_", "TRAINING_")):
            monkeypatch.setenv(name, value)
    previous = mlflow.get_tracking_uri()
    yield TrainingSettings()
    mlflow.set_tracking_uri(previous)


def test_a_worse_challenger_is_not_promoted_and_the_decision_says_why(loop: Loop) -> None:
    loop.client.set_registered_model_alias(MODEL, "challenger", loop.tree)
    loop.set_policy(min_feedback=100)
    result = run_training_job("promote-challenger", env=loop.env())
    outcome = json.loads(result.stdout)
    assert outcome["outcome"] == "not_promoted" and not outcome["go"]
    assert outcome["champion"]["samples"] == outcome["challenger"]["samples"] == LABELLED
    assert outcome["champion"]["r2"] > outcome["challenger"]["r2"]
    assert loop.aliases() == {"champion": "1", "challenger": loop.tree}
    [decision] = loop.decisions()
    assert decision["source"] == "live_comparison" and decision["outcome"] == "not_promoted"
    assert decision["model_version"] == loop.tree and decision["finished_at"]
    assert decision["started_at"] is None  # a comparison, not a retraining run
    assert any("< champion version 1's" in r for r in decision["reasons"]), decision
    assert decision["policy"]["min_feedback"] == 100
    assert set(decision["signals"]) == {"champion", "challenger"}


def test_a_better_challenger_becomes_champion(loop: Loop, in_process: TrainingSettings) -> None:
    loop.client.set_registered_model_alias(MODEL, "champion", loop.tree)
    loop.client.set_registered_model_alias(MODEL, "challenger", "1")
    loop.set_policy(min_feedback=100)
    result = promote_challenger(in_process, MODEL)
    assert result.outcome == "promoted" and result.go
    assert loop.aliases()["champion"] == "1"
    [decision] = loop.decisions()
    assert decision["outcome"] == "promoted" and decision["triggers"] == ["challenger_wins"]
    assert decision["model_version"] == "1"
    records, store = loop.store()
    assert store.lease() is None  # released
    records.close()


def test_nothing_is_judged_without_enough_feedback_or_a_distinct_challenger(
    loop: Loop, in_process: TrainingSettings
) -> None:
    loop.client.set_registered_model_alias(MODEL, "challenger", loop.tree)
    # The default policy wants 200 predictions with feedback; there are 150.
    result = promote_challenger(in_process, MODEL)
    assert result.outcome == "skipped" and not result.go
    assert any("need 200" in r for r in result.reasons)
    loop.client.set_registered_model_alias(MODEL, "challenger", "1")  # the champion itself
    result = promote_challenger(in_process, MODEL)
    assert result.outcome == "skipped"
    assert result.reasons == ("no @challenger distinct from @champion (version 1)",)
    assert [d["outcome"] for d in loop.decisions()] == ["skipped", "skipped"]
    assert loop.aliases()["champion"] == "1"


def test_a_dry_run_records_nothing_and_a_held_lease_refuses(
    loop: Loop, in_process: TrainingSettings
) -> None:
    loop.client.set_registered_model_alias(MODEL, "champion", loop.tree)
    loop.client.set_registered_model_alias(MODEL, "challenger", "1")
    loop.set_policy(min_feedback=100)
    dry = promote_challenger(in_process, MODEL, dry_run=True)
    assert dry.outcome == "dry_run" and dry.go
    assert loop.decisions() == [] and loop.aliases()["champion"] == loop.tree

    records, store = loop.store()
    try:
        assert store.acquire("retrain-pod", 60) is not None
        refused = promote_challenger(in_process, MODEL)
        assert refused.outcome == "already_running" and "retrain-pod" in (refused.error or "")
        assert loop.aliases()["champion"] == loop.tree
        assert [d["outcome"] for d in loop.decisions()] == ["already_running"]
    finally:
        store.release("retrain-pod")
        records.close()
