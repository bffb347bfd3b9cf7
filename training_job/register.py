"""Step 4 of the pipeline: register the selected candidate and gate it against the champion.

Order matters for crash safety: the version is created and fully tagged first, and moving an
alias is the very last write, so a run that dies at any earlier point leaves every alias as
it was (at worst an extra, un-aliased version remains, tagged with why).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from housing.contract import FEATURES, TARGET
from housing.registry import (
    CANDIDATE_TAG,
    CHAMPION,
    DATA_DIGEST_TAG,
    GIT_COMMIT_TAG,
    test_metric_tag,
)
from housing.regression import regression_metrics
from training_job import failpoints
from training_job.evaluate import find_candidate_run
from training_job.gate import GateDecision, ReferenceScores, gate
from training_job.io import read_json
from training_job.params import RegisterParams
from training_job.prepare import load_prepared
from training_job.reference import load_reference
from training_job.settings import TrainingSettings
from training_job.tracking import connect
from training_job.train import MODEL_URI_TAG

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    candidate: str
    alias: str
    promoted: bool
    reasons: tuple[str, ...]
    test_metrics: dict[str, float]
    champion_before: str | None
    champion_test_r2: float | None


def current_champion(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def register(
    prepared_dir: Path,
    models_dir: Path,
    evaluation_path: Path,
    params: RegisterParams,
    settings: TrainingSettings,
    reference_dir: Path,
) -> Registration:
    evaluation = read_json(evaluation_path)
    selected: str = evaluation["selected"]
    prepared = load_prepared(prepared_dir)
    test = prepared.test
    x_test, y_test = test[list(FEATURES)], test[TARGET].to_numpy()
    x_ref, y_ref = load_reference(reference_dir, prepared.info["split_salt"])

    connect(settings)
    client = MlflowClient()
    model_path = models_dir / f"{selected}.joblib"
    run = find_candidate_run(selected, model_path)
    candidate = joblib.load(model_path)
    candidate_metrics = regression_metrics(y_test, candidate.predict(x_test))
    candidate_ref_r2 = regression_metrics(y_ref, candidate.predict(x_ref))["r2"]

    try:
        client.get_registered_model(params.model_name)
    except MlflowException:
        client.create_registered_model(
            params.model_name,
            description="California median house value (units of $100,000) from 8 block-group "
            "features. @champion is served; @challenger is the latest gated-out candidate.",
        )

    champion_before = current_champion(client, params.model_name)
    champion_r2: float | None = None
    reference: ReferenceScores | None = None
    if champion_before is not None:
        # Score the champion on today's test rows, not on the number it was promoted with:
        # both models must be judged on the same data.
        champion = mlflow.sklearn.load_model(f"models:/{params.model_name}/{champion_before}")
        champion_r2 = regression_metrics(y_test, champion.predict(x_test))["r2"]
        reference = ReferenceScores(
            candidate_r2=candidate_ref_r2,
            champion_r2=regression_metrics(y_ref, champion.predict(x_ref))["r2"],
            tolerance=params.reference_tolerance,
        )
    decision: GateDecision = gate(
        candidate_metrics["r2"],
        champion_r2,
        params.test_r2_floor,
        params.min_improvement,
        reference,
    )

    failpoints.hit("before_register")
    model_uri = run.data.tags[MODEL_URI_TAG]
    # Not mlflow.register_model: it creates the registered model again (made above) and
    # prints "Registered model ... already exists" to stderr on every run, a new store too.
    version = client.create_model_version(
        params.model_name,
        source=model_uri,
        run_id=run.info.run_id,
        model_id=model_uri.removeprefix("models:/"),
        tags={
            CANDIDATE_TAG: selected,
            "run_id": run.info.run_id,
            DATA_DIGEST_TAG: run.data.tags[DATA_DIGEST_TAG],
            GIT_COMMIT_TAG: run.data.tags.get(GIT_COMMIT_TAG, "unknown"),
            **{test_metric_tag(k): f"{v:.6f}" for k, v in candidate_metrics.items()},
            "gate.decision": decision.alias,
            "gate.reasons": "; ".join(decision.reasons),
            "gate.champion_version": champion_before or "none",
            "gate.champion_test_r2": "none" if champion_r2 is None else f"{champion_r2:.6f}",
            "gate.reference_r2": f"{candidate_ref_r2:.6f}",
            "gate.champion_reference_r2": "none"
            if reference is None
            else f"{reference.champion_r2:.6f}",
        },
    ).version
    failpoints.hit("before_promote")
    # The last write of the run.
    client.set_registered_model_alias(params.model_name, decision.alias, str(version))
    result = Registration(
        model_name=params.model_name,
        version=str(version),
        candidate=selected,
        alias=decision.alias,
        promoted=decision.promote,
        reasons=decision.reasons,
        test_metrics=candidate_metrics,
        champion_before=champion_before,
        champion_test_r2=champion_r2,
    )
    log.info(
        "version %s of %s is @%s: %s",
        version,
        params.model_name,
        decision.alias,
        "; ".join(decision.reasons),
    )
    return result


def as_dict(registration: Registration) -> dict:
    return asdict(registration)
