"""The real pipeline on the real data, embedded store: what it registers and how it gates."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from housing.contract import FEATURES, PROFILE_PATH
from tests.support.pipeline import (
    RAW_DATA,
    REPO,
    TrainedRegistry,
    pipeline_env,
    run_pipeline,
    run_training_job,
)
from training_job.datafile import file_md5

pytestmark = pytest.mark.slow
MODEL = "california-housing"


def client_for(tracking_uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def aliases(client: MlflowClient) -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model(MODEL).aliases.items()}


def test_champion_is_registered_with_its_contract(trained_registry: TrainedRegistry) -> None:
    client = client_for(trained_registry.tracking_uri)
    version = client.get_model_version_by_alias(MODEL, "champion")
    tags = version.tags
    assert tags["candidate"] == "lightgbm"
    assert tags["gate.decision"] == "champion"
    assert float(tags["test_r2"]) >= 0.83
    assert tags["data_digest"] == file_md5(RAW_DATA) == "01d0b31df796a8d4b7a6ce4c37f42dbc"
    assert tags["mlflow.source.git.commit"]

    run = client.get_run(version.run_id)
    for metric in ("r2", "rmse", "mae"):
        assert f"val_{metric}" in run.data.metrics and f"test_{metric}" in run.data.metrics
    # The workspace has no search result (models/tuned.json): params.yaml's entry applies.
    assert run.data.params["n_estimators"] == "600"
    assert run.data.tags["tuned"] == "false"
    assert run.data.tags["mlflow.source.git.commit"] == tags["mlflow.source.git.commit"]
    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"cal_housing-train", "cal_housing-val", "cal_housing-test"}
    assert all(d.digest == tags["data_digest"] for d in inputs.values())
    assert json.loads(inputs["cal_housing-train"].source)["uri"].endswith(
        "data/raw/cal_housing.data"
    )
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {
        "plots/predicted_vs_actual.png",
        "plots/residuals.png",
        "plots/feature_importance.png",
    }

    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}@champion"))
    profile = json.loads((model_dir / PROFILE_PATH).read_text())
    assert [f["name"] for f in profile["features"]] == list(FEATURES)
    assert profile["data_digest"] == tags["data_digest"]
    model_info = mlflow.models.get_model_info(f"models:/{MODEL}@champion")
    assert model_info.signature.inputs.input_names() == list(FEATURES)
    assert (model_dir / "input_example.json").exists()


def test_every_candidate_is_a_run(trained_registry: TrainedRegistry) -> None:
    client_for(trained_registry.tracking_uri)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert {r.data.tags["candidate"] for r in runs} == {
        "linear_regression",
        "decision_tree",
        "lightgbm",
    }
    evaluation = json.loads((trained_registry.workspace / "metrics/evaluate.json").read_text())
    assert evaluation["selected"] == "lightgbm"
    # The old production model's level, and the old baseline's.
    assert 0.55 < evaluation["candidates"]["decision_tree"]["test_r2"] < 0.75
    assert 0.55 < evaluation["candidates"]["linear_regression"]["test_r2"] < 0.65


def params_with(tmp_path: Path, candidates: list[str]) -> Path:
    """The project's params with only `candidates`, and a smaller boosting model (faster)."""
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["train"]["candidates"] = {
        k: v for k, v in data["train"]["candidates"].items() if k in candidates
    }
    if "lightgbm" in candidates:
        data["train"]["candidates"]["lightgbm"]["n_estimators"] = 100
    path = tmp_path / f"params-{'-'.join(candidates)}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A registry whose first champion is the weak linear baseline."""
    root = tmp_path_factory.mktemp("gating")
    state = root / "state"
    run_pipeline(root, state, params=params_with(root, ["linear_regression"]))
    return root, state, f"sqlite:///{state / 'mlflow.db'}"


def test_gating_sequence(gated: tuple[Path, Path, str], tmp_path: Path) -> None:
    root, state, uri = gated
    client = client_for(uri)
    assert aliases(client) == {"champion": "1"}

    # A better model is promoted.
    boosting = params_with(tmp_path, ["lightgbm"])
    run_pipeline(root, state, params=boosting)
    assert aliases(client) == {"champion": "2"}
    v2 = client.get_model_version(MODEL, "2")
    assert v2.tags["gate.decision"] == "champion"
    assert v2.tags["gate.champion_version"] == "1"
    assert float(v2.tags["gate.champion_test_r2"]) < 0.65

    # A worse one is not: it becomes @challenger, the decision says why.
    result = run_pipeline(root, state, params=params_with(tmp_path, ["decision_tree"]))
    assert '"promoted": false' in result.stdout
    assert aliases(client) == {"champion": "2", "challenger": "3"}
    v3 = client.get_model_version(MODEL, "3")
    assert v3.tags["gate.decision"] == "challenger"
    assert "< champion's" in v3.tags["gate.reasons"]

    # Re-registering the champion's equal is not promoted either (margin).
    run_pipeline(root, state, params=boosting)
    assert aliases(client) == {"champion": "2", "challenger": "4"}


@pytest.mark.parametrize("point", ["before_register", "before_promote"])
def test_killed_run_leaves_the_aliases(gated: tuple[Path, Path, str], point: str) -> None:
    root, state, uri = gated
    client = client_for(uri)
    before = aliases(client)
    versions_before = len(client.search_model_versions(f"name='{MODEL}'"))
    env = pipeline_env(state) | {"TRAINING_JOB_FAILPOINT": point}
    result = run_training_job(
        "register",
        "--prepared",
        str(root / "data/prepared"),
        "--models",
        str(root / "models/candidates"),
        "--metrics",
        str(root / "metrics"),
        env=env,
        check=False,
    )
    assert result.returncode == -9
    assert aliases(client) == before
    versions_after = len(client.search_model_versions(f"name='{MODEL}'"))
    # Killed after registering: one orphan version, no alias on it.
    assert versions_after == versions_before + (point == "before_promote")
    # The next run works.
    run_training_job(
        "register",
        "--prepared",
        str(root / "data/prepared"),
        "--models",
        str(root / "models/candidates"),
        "--metrics",
        str(root / "metrics"),
        env=pipeline_env(state),
    )
    assert aliases(client)["champion"] == before["champion"]


def set_field(row: str, index: int, value: str) -> str:
    fields = row.split(",")
    fields[index] = value
    return ",".join(fields)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda rows: [*rows[:10], rows[10].replace(",", ";"), *rows[11:]], "[column-count]"),
        (
            lambda rows: [set_field(rows[0], 6, "0"), *rows[1:]],
            "[impossible] cal_housing.data: column 'households'",
        ),
        (lambda rows: [*rows[:3], set_field(rows[3], 5, "-12"), *rows[4:]], "column 'population'"),
        (lambda rows: rows[:500], "[row-count]"),
        (lambda rows: [set_field(rows[0], 7, "n/a"), *rows[1:]], "column 'medianIncome': not a"),
    ],
    ids=["column-count", "zero-households", "negative-count", "truncated", "text-in-number"],
)
def test_bad_data_changes_nothing(
    gated: tuple[Path, Path, str], tmp_path: Path, edit: object, expected: str
) -> None:
    _, state, uri = gated
    client = client_for(uri)
    before = aliases(client)
    versions_before = len(client.search_model_versions(f"name='{MODEL}'"))
    rows = RAW_DATA.read_text().splitlines()
    bad = tmp_path / "cal_housing.data"
    bad.write_text("\n".join(edit(rows)))  # type: ignore[operator]
    result = run_pipeline(tmp_path, state, raw=bad, check=False)
    assert result.returncode == 2
    assert expected in result.stderr
    assert aliases(client) == before
    assert len(client.search_model_versions(f"name='{MODEL}'")) == versions_before
    assert not (tmp_path / "models").exists()


def test_status_reports_the_champion(trained_registry: TrainedRegistry) -> None:
    result = run_training_job("status", "--require-champion", env=trained_registry.env())
    info = json.loads(result.stdout)
    assert info["champion"]["tags"]["gate.decision"] == "champion"


def test_status_without_champion_exits_3(tmp_path: Path) -> None:
    result = run_training_job(
        "status", "--require-champion", env=pipeline_env(tmp_path / "empty"), check=False
    )
    assert result.returncode == 3
    assert json.loads(result.stdout)["champion"] is None
