"""The hyperparameter search: budgeted, on train and validation rows only, and its result is
what `train` then fits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.pipeline import RAW_DATA, REPO
from training_job.params import TuneParams, load_params
from training_job.prepare import prepare
from training_job.tune import tune, tuned_hyperparameters


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prepared")
    prepare(RAW_DATA, folder, folder / "prepare.json", load_params(REPO / "params.yaml").prepare)
    return folder


def test_a_small_search_never_reads_the_test_rows(prepared: Path, tmp_path: Path) -> None:
    # The test split is gone: a search that touched it would fail.
    (prepared / "test.parquet").rename(tmp_path / "test.parquet")
    try:
        budget = TuneParams(
            candidate="lightgbm",
            trials=3,
            timeout_seconds=60,
            seed=1,
            space={"n_estimators": [10, 30], "learning_rate": [0.05, 0.3, "log"]},
        )
        out = tmp_path / "tuned.json"
        result = tune(prepared, out, budget, {"num_leaves": 15}, seed=42)
    finally:
        (tmp_path / "test.parquet").rename(prepared / "test.parquet")
    assert result["trials"] == 3
    written = json.loads(out.read_text())
    assert set(written["hyperparameters"]) == {"n_estimators", "learning_rate"}
    assert 10 <= written["hyperparameters"]["n_estimators"] <= 30
    assert written["val_rmse"] < 0.7  # LightGBM on the geographic features, even this small
    assert tuned_hyperparameters(out, "lightgbm") == written["hyperparameters"]
    assert tuned_hyperparameters(out, "decision_tree") == {}
    assert tuned_hyperparameters(tmp_path / "absent.json", "lightgbm") == {}


def test_the_committed_search_result_is_for_the_tuned_candidate() -> None:
    params = load_params(REPO / "params.yaml")
    tuned = json.loads((REPO / "models/tuned.json").read_text())
    assert tuned["candidate"] == params.tune.candidate in params.train.candidates
    assert set(tuned["hyperparameters"]) <= set(params.tune.space)
