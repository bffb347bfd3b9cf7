"""Typed view of params.yaml: one model per stage namespace, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

DEFAULT_PARAMS = Path("params.yaml")
# The hyperparameter search's result (training_job.tune), relative to the workspace: kept in
# git, so that every run trains the tuned model without repeating the search.
TUNED = Path("models/tuned.json")
# The frozen reference set's folder (training_job.reference), relative to the workspace.
REFERENCE = Path("data/reference")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileParams(_Strict):
    quantiles: list[float] = Field(min_length=1)
    histogram_bins: int = Field(ge=2, le=100)
    reference_sample_size: int = Field(ge=100)
    domain_margin: float = Field(ge=0.0, le=10.0)
    seed: int


class PrepareParams(_Strict):
    min_rows: int = Field(ge=1)
    split_salt: str = Field(min_length=1)
    test_percent: int = Field(gt=0, lt=100)
    val_percent: int = Field(gt=0, lt=100)
    profile: ProfileParams


class TrainParams(_Strict):
    seed: int
    candidates: dict[str, dict[str, Any]] = Field(min_length=1)


class TuneParams(_Strict):
    candidate: str = Field(min_length=1)
    """The candidate (a train.candidates key) whose hyperparameters are searched."""
    trials: int = Field(ge=1)
    timeout_seconds: float = Field(gt=0)
    """The search stops at `trials` or after this long, whichever comes first."""
    seed: int
    space: dict[str, list[float | int | str]] = Field(min_length=1)
    """name: [low, high] (ints if both are), optionally [low, high, log]."""


class EvaluateParams(_Strict):
    selection_metric: Literal["val_rmse", "val_mae", "val_r2"]
    plot_points: int = Field(ge=10)
    importance_rows: int = Field(ge=10)
    importance_repeats: int = Field(ge=1, le=50)


class RegisterParams(_Strict):
    model_name: str = Field(min_length=1)
    test_r2_floor: float = Field(
        ge=-1.0, le=1.0, validation_alias=AliasChoices("test_r2_floor", "r2_floor")
    )
    """The gate's floor on the candidate's held-out test R² (params.yaml's older name,
    r2_floor, is still read; the retraining policy's r2_floor is a floor on live R²)."""
    min_improvement: float = Field(ge=0.0, le=1.0)
    reference_tolerance: float = Field(ge=0.0, le=1.0)
    """How much worse than the champion's R² on the frozen reference set a challenger may be."""


class Params(_Strict):
    prepare: PrepareParams
    tune: TuneParams
    train: TrainParams
    evaluate: EvaluateParams
    # `register` would shadow ABCMeta.register on the model class.
    registration: RegisterParams = Field(alias="register")


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the key."""


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ParamsError(f"{path}: {problems}") from None
