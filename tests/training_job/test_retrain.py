"""The closed loop on the training side, on the real data: landing, decision, lease, crash.

Scenario numbers refer to the loop issue: 3 new data landed, 4 corrupted labels, 5 live error
degrades, 6 two triggers at once, 7 a retrain killed mid-run; 1-2 (drift) at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from housing.contract import FEATURES, RAW_COLUMNS
from housing.servingdb import RecordStore, RequestRecord
from housing.servingdb.models import prediction_ids, retrain_lease
from housing.servingdb.retrain import RetrainStore
from tests.support.pipeline import RAW_DATA, REPO, copy_workspace, pipeline_env
from training_job.features import derive_features
from training_job.validate import read_raw

pytestmark = pytest.mark.slow
MODEL = "california-housing"
ROWS = RAW_DATA.read_text().splitlines()
# The initial data set is 60% of the file; the other 40% "lands" later (scenario 3).
FIRST, LATER = ROWS[: int(len(ROWS) * 0.6)], ROWS[int(len(ROWS) * 0.6) :]


class Loop:
    """A workspace (git + DVC), its MLflow store, serving database and landing folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = copy_workspace(root / "work")
        raw = self.work / "data/raw/cal_housing.data"
        raw.write_text("\n".join(FIRST))
        subprocess.run(
            [sys.executable, "-m", "dvc", "add", "-q", str(raw)], cwd=self.work, check=True
        )
        # The frozen reference set, from the copied DVC remote (as a clone pulls it).
        subprocess.run(
            [sys.executable, "-m", "dvc", "pull", "-q", "--recursive", "data/reference"],
            cwd=self.work,
            check=True,
        )
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["train"]["candidates"]["lightgbm"]["n_estimators"] = 150
        (self.work / "params.yaml").write_text(yaml.safe_dump(params))
        self.state = root / "state"
        self.landing = root / "landing"
        self.landing.mkdir()
        self.tracking_uri = f"sqlite:///{self.state / 'mlflow.db'}"
        self.db_url = f"sqlite:///{self.state / 'serving.db'}"

    def env(self, **extra: str) -> dict[str, str]:
        return pipeline_env(self.state) | {
            "TRAINING_WORKSPACE": str(self.work),
            "TRAINING_LANDING_URL": str(self.landing),
            "TRAINING_LEASE_TTL_SECONDS": "4",
            **extra,
        }

    def retrain(
        self, *args: str, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "training_job", "retrain", *args],
            cwd=self.work,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"retrain exited {result.returncode}:\n{result.stderr[-3000:]}")
        return result

    def store(self) -> tuple[RecordStore, RetrainStore]:
        records = RecordStore(self.db_url)
        records.migrate()
        return records, RetrainStore(records)

    def allow_back_to_back(self) -> None:
        records, store = self.store()
        store.set_policy({"min_interval_hours": 0})
        records.close()

    def aliases(self) -> dict[str, str]:
        client = MlflowClient(tracking_uri=self.tracking_uri)
        return {a: str(v) for a, v in client.get_registered_model(MODEL).aliases.items()}


def outcome(result: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Loop:
    loop = Loop(tmp_path_factory.mktemp("loop"))
    first = outcome(loop.retrain())
    assert first["triggers"] == ["no_champion"] and first["outcome"] == "promoted"
    return loop


def test_nothing_to_do_is_recorded_as_skipped(loop: Loop) -> None:
    result = outcome(loop.retrain())
    assert result["outcome"] == "skipped" and not result["go"]
    assert any("minimum interval" in r for r in result["reasons"])
    records, store = loop.store()
    assert store.decisions(1)[0]["outcome"] == "skipped"
    records.close()


def test_dry_run_records_nothing(loop: Loop) -> None:
    records, store = loop.store()
    before = len(store.decisions(100))
    result = outcome(loop.retrain("--dry-run"))
    assert result["outcome"] == "dry_run"
    assert len(store.decisions(100)) == before
    records.close()


def test_scenario_3_new_data_lands_and_a_better_model_is_promoted(loop: Loop) -> None:
    loop.allow_back_to_back()
    champion = loop.aliases()["champion"]
    (loop.landing / "batch-2026-11.csv").write_text("\n".join(LATER))
    result = outcome(loop.retrain())
    assert result["triggers"] == ["data_changed"]
    assert result["outcome"] == "promoted", result
    assert loop.aliases()["champion"] == result["model_version"] != champion
    # DVC did the import and the hashing.
    record = yaml.safe_load((loop.work / "data/raw/batches/batch-2026-11.csv.dvc").read_text())
    assert record["deps"][0]["path"].endswith("landing/batch-2026-11.csv")
    client = MlflowClient(tracking_uri=loop.tracking_uri)
    new = client.get_model_version(MODEL, result["model_version"])
    assert float(new.tags["test_r2"]) > float(new.tags["gate.champion_test_r2"])
    assert "reference R²" in new.tags["gate.reasons"]
    print("scenario 3:", new.tags["gate.reasons"])
    assert new.tags["data_digest"] == result["signals"]["data_digest"]


def test_scenario_4_corrupted_labels_are_not_promoted(loop: Loop) -> None:
    loop.allow_back_to_back()
    champion = loop.aliases()["champion"]
    raw = pd.DataFrame([r.split(",") for r in ROWS[:6000]], columns=list(RAW_COLUMNS))
    rng = np.random.default_rng(7)
    raw["medianHouseValue"] = rng.permutation(raw["medianHouseValue"].to_numpy())
    raw["medianIncome"] = [f"{float(v) + 0.0001:.6f}" for v in raw["medianIncome"]]
    (loop.landing / "batch-corrupted.csv").write_text(
        "\n".join(",".join(row) for row in raw.to_numpy().tolist())
    )
    result = outcome(loop.retrain())
    assert result["triggers"] == ["data_changed"]
    assert result["outcome"] == "not_promoted" and not result["promoted"]
    assert loop.aliases()["champion"] == champion
    assert loop.aliases()["challenger"] == result["model_version"]
    client = MlflowClient(tracking_uri=loop.tracking_uri)
    tags = client.get_model_version(MODEL, result["model_version"]).tags
    print("scenario 4:", tags["gate.reasons"])
    # Refused by the frozen reference set, whatever the polluted test rows say: on those, the
    # challenger may even look better than the champion (it did: 0.495 vs 0.474).
    assert (
        f"reference R² {float(tags['gate.reference_r2']):.4f} < champion's" in tags["gate.reasons"]
    )
    assert float(tags["gate.reference_r2"]) < float(tags["gate.champion_reference_r2"]) - 0.01


def _log_predictions(loop: Loop, features: pd.DataFrame, actual: np.ndarray) -> None:
    """What the server would have logged for the champion, with feedback."""
    client = MlflowClient(tracking_uri=loop.tracking_uri)
    version = client.get_model_version_by_alias(MODEL, "champion").version
    model = joblib.load(loop.state / "retrain/models/candidates/lightgbm.joblib")
    outputs = model.predict(features[list(FEATURES)])
    records, _ = loop.store()
    inputs = features[list(FEATURES)].to_numpy(dtype=np.float64)
    record = RequestRecord(
        id=uuid.uuid4().hex,
        request_id="r",
        created_at=datetime.now(UTC),
        model_name=MODEL,
        model_version=str(version),
        protocol="v1",
        features=list(FEATURES),
        inputs=inputs,
        outputs=np.asarray(outputs, dtype=np.float64),
        latency_ms=1.0,
        status=200,
        error=None,
    )
    records.write_batch([record])
    for prediction_id, truth in zip(prediction_ids(record.id, len(inputs)), actual, strict=True):
        records.add_feedback(prediction_id, float(truth))
    records.close()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return derive_features(read_raw(RAW_DATA, min_rows=1))


def test_scenarios_1_2_5_drift_and_live_error(loop: Loop, frame: pd.DataFrame) -> None:
    # 1. An iid batch with honest feedback: no drift, no live-error trigger.
    iid = frame.sample(600, random_state=3)
    _log_predictions(loop, iid, iid["MedHouseVal"].to_numpy())
    calm = outcome(loop.retrain("--dry-run"))
    assert "drift" not in calm["triggers"] and not calm["triggers"], calm["reasons"]
    assert max(d["psi"] for d in calm["signals"]["drift"].values()) < 0.1
    assert not any(d["ks"] > d["ks_critical"] for d in calm["signals"]["drift"].values())

    # 2 + 5. Only southern block groups arrive, and their prices have risen by 60%.
    south = frame[frame["Latitude"] < 34.2].sample(1200, random_state=4)
    _log_predictions(loop, south, south["MedHouseVal"].to_numpy() * 1.6)
    shifted = outcome(loop.retrain("--dry-run"))
    assert "drift" in shifted["triggers"]
    drift = {k: d["psi"] for k, d in shifted["signals"]["drift"].items()}
    assert drift["Latitude"] > 0.2 and drift["Longitude"] > 0.2
    assert drift["MedInc"] < 0.2  # the shift is geographic
    assert any("Latitude KS" in r for r in shifted["reasons"])
    assert {"live_error_degraded"} <= set(shifted["triggers"])
    assert shifted["signals"]["live_r2"] < 0.7


def test_scenario_6_two_triggers_at_once_make_one_run(loop: Loop) -> None:
    env = loop.env()
    cmd = [sys.executable, "-m", "training_job", "retrain", "--force"]
    procs = [
        subprocess.Popen(
            cmd, cwd=loop.work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(600), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 4], results
    refused = next(err for code, _, err in results if code == 4)
    assert "a retraining run is already going" in refused


def test_scenario_7_killed_mid_run_changes_nothing_and_the_next_run_works(loop: Loop) -> None:
    before = loop.aliases()
    killed = loop.retrain(
        "--force",
        check=False,
        TRAINING_JOB_FAILPOINT="after_train",
        TRAINING_LEASE_TTL_SECONDS="120",
    )
    assert killed.returncode == -9
    assert loop.aliases() == before
    # The lease of the dead run still blocks, for at most its TTL ...
    blocked = loop.retrain("--force", check=False)
    assert blocked.returncode == 4
    assert "a retraining run is already going" in blocked.stderr
    # ... (let the TTL pass without waiting two minutes) ...
    records, _ = loop.store()
    with records.engine.begin() as connection:
        connection.execute(
            retrain_lease.update().values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    records.close()
    # ... then the next run takes over and marks the dead one abandoned.
    result = outcome(loop.retrain("--force"))
    assert result["outcome"] in {"promoted", "not_promoted"}
    records, store = loop.store()
    outcomes = [d["outcome"] for d in store.decisions(10)]
    assert "abandoned" in outcomes
    records.close()
