"""The whole pipeline in one process: prepare -> train -> evaluate -> register.

`dvc repro` runs the same four steps as separate stages (and skips unchanged ones); this is
what a Kubernetes Job and the retraining command run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training_job import failpoints
from training_job.evaluate import evaluate, report
from training_job.params import Params
from training_job.prepare import prepare
from training_job.register import Registration, register
from training_job.settings import TrainingSettings
from training_job.train import train


@dataclass(frozen=True)
class Layout:
    """Where the steps read and write, under one root (the repository by default)."""

    root: Path

    @property
    def prepared(self) -> Path:
        return self.root / "data/prepared"

    @property
    def models(self) -> Path:
        return self.root / "models/candidates"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def plots(self) -> Path:
        return self.root / "plots"


def run_pipeline(
    raw: Path,
    layout: Layout,
    params: Params,
    settings: TrainingSettings,
    tuned: Path,
    reference: Path,
) -> Registration:
    """`tuned`: the search's result to train with (params.TUNED in the workspace);
    `reference`: the frozen reference set's folder (reference.REFERENCE in the workspace)."""
    prepare(raw, layout.prepared, layout.metrics / "prepare.json", params.prepare)
    train(
        layout.prepared,
        layout.models,
        layout.metrics / "train.json",
        params.train,
        settings,
        tuned=tuned,
    )
    failpoints.hit("after_train")
    evaluate(
        layout.prepared,
        layout.models,
        layout.metrics / "train.json",
        layout.metrics / "evaluate.json",
        params.evaluate,
        settings,
    )
    registration = register(
        layout.prepared,
        layout.models,
        layout.metrics / "evaluate.json",
        params.registration,
        settings,
        reference,
    )
    # After the decision: the server may already be loading the new champion meanwhile.
    report(
        layout.prepared,
        layout.models,
        layout.metrics / "evaluate.json",
        layout.plots,
        params.evaluate,
        settings,
    )
    return registration
