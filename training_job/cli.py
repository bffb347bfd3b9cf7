"""`training-job` / `python -m training_job`: one command per pipeline step, and the whole
pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from housing.policy import Outcome
from housing.version import version
from training_job.params import DEFAULT_PARAMS, REFERENCE, TUNED, ParamsError, load_params
from training_job.settings import TrainingSettings
from training_job.validate import DataValidationError

app = typer.Typer(
    help="Train, evaluate and register the California Housing model (DVC + MLflow).\n\n"
    "Each step reads its own namespace of params.yaml. MLFLOW_TRACKING_URI selects the MLflow "
    "store (default: SQLite under ./state).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

RAW = Path("data/raw")
RAW_HELP = "Raw data: a file, or the folder of the original file and landed batches."
PREPARED = Path("data/prepared")
MODELS = Path("models/candidates")
METRICS = Path("metrics")
PLOTS = Path("plots")

ParamsOpt = Annotated[Path, typer.Option(help="params.yaml to read.")]
PreparedOpt = Annotated[Path, typer.Option(help="Folder of the prepared splits and profile.")]
ModelsOpt = Annotated[Path, typer.Option(help="Folder of the fitted candidate models.")]
MetricsOpt = Annotated[Path, typer.Option(help="Folder of the metrics JSON files.")]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"training-job {version()}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    from housing.telemetry import disable_telemetry
    from training_job.logs import configure_logging

    disable_telemetry()
    settings = _settings()
    configure_logging(verbose, settings.log_format)
    from threadpoolctl import threadpool_limits

    # Process-wide for the command's lifetime (the returned limiter is deliberately kept).
    ctx.obj = threadpool_limits(limits=settings.threads)


def _settings() -> TrainingSettings:
    """The settings from the environment; a refused value is a line per variable and exit 2."""
    try:
        return TrainingSettings()
    except ValidationError as exc:
        typer.echo("error: invalid configuration:", err=True)
        for error in exc.errors():
            # A field's name (the variable is PREFIX + NAME) or its alias (the variable).
            where = str(error["loc"][0]) if error["loc"] else ""
            if where in TrainingSettings.model_fields:
                prefix = TrainingSettings.model_config.get("env_prefix", "")
                where = f"{prefix}{where}".upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            typer.echo(f"  {where}: {message}" if where else f"  {message}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def _errors() -> Iterator[None]:
    """Turn known failures into a clear message and a non-zero exit, without a traceback."""
    from mlflow.exceptions import MlflowException

    from training_job.evaluate import StaleRunsError

    try:
        yield
    except DataValidationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (ParamsError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (StaleRunsError, MlflowException, FileNotFoundError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _run(step: Callable[[], Any]) -> Any:
    with _errors():
        return step()


@app.command()
def validate(
    raw: Annotated[Path, typer.Argument(help="Raw data file or folder to check.")] = RAW,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:
    """Check raw data (columns, types, nulls, ranges, impossible values, row count)."""
    from training_job.datafile import data_files
    from training_job.validate import read_raw_files

    min_rows = load_params(params).prepare.min_rows
    frame = _run(lambda: read_raw_files(data_files(raw), raw.as_posix(), min_rows))
    typer.echo(f"{raw}: OK, {len(frame)} rows")


@app.command()
def prepare(
    raw: Annotated[Path, typer.Option(help=RAW_HELP)] = RAW,
    out: PreparedOpt = PREPARED,
    metrics: MetricsOpt = METRICS,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:
    """Validate the raw file, derive the 8 features, split, and profile the training data."""
    from training_job.prepare import prepare as run_prepare

    _run(lambda: run_prepare(raw, out, metrics / "prepare.json", load_params(params).prepare))


TunedOpt = Annotated[Path, typer.Option(help="The hyperparameter search's result (JSON).")]


@app.command()
def tune(
    prepared: PreparedOpt = PREPARED,
    out: TunedOpt = TUNED,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:
    """Search one candidate's hyperparameters on the train and validation rows (Optuna)."""
    from training_job.tune import tune as run_tune

    loaded = load_params(params)
    base = loaded.train.candidates.get(loaded.tune.candidate)
    if base is None:
        typer.echo(f"error: tune.candidate {loaded.tune.candidate!r} is not a train candidate")
        raise typer.Exit(2)
    threads = TrainingSettings().threads
    _run(lambda: run_tune(prepared, out, loaded.tune, base, loaded.train.seed, threads))


@app.command()
def train(
    prepared: PreparedOpt = PREPARED,
    models: ModelsOpt = MODELS,
    metrics: MetricsOpt = METRICS,
    tuned: TunedOpt = TUNED,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:
    """Fit every candidate; log each as an MLflow run with its model, data and signature."""
    from training_job.train import train as run_train

    settings = TrainingSettings()
    _run(
        lambda: run_train(
            prepared, models, metrics / "train.json", load_params(params).train, settings, tuned
        )
    )


@app.command()
def evaluate(
    prepared: PreparedOpt = PREPARED,
    models: ModelsOpt = MODELS,
    metrics: MetricsOpt = METRICS,
    plots: Annotated[Path, typer.Option(help="Folder for DVC plots.")] = PLOTS,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:
    """Score every candidate on the test split, select the best by validation, log plots."""
    from training_job.evaluate import evaluate as run_evaluate
    from training_job.evaluate import report

    settings = TrainingSettings()
    evaluate_params = load_params(params).evaluate
    evaluation = metrics / "evaluate.json"
    _run(
        lambda: run_evaluate(
            prepared, models, metrics / "train.json", evaluation, evaluate_params, settings
        )
    )
    _run(lambda: report(prepared, models, evaluation, plots, evaluate_params, settings))


ReferenceOpt = Annotated[Path, typer.Option(help="Folder of the frozen reference set.")]


@app.command()
def register(
    prepared: PreparedOpt = PREPARED,
    models: ModelsOpt = MODELS,
    metrics: MetricsOpt = METRICS,
    reference: ReferenceOpt = REFERENCE,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:
    """Register the selected candidate; gate it; move @champion or @challenger (last)."""
    from training_job.register import as_dict
    from training_job.register import register as run_register

    settings = TrainingSettings()
    result = _run(
        lambda: run_register(
            prepared,
            models,
            metrics / "evaluate.json",
            load_params(params).registration,
            settings,
            reference,
        )
    )
    typer.echo(json.dumps(as_dict(result), indent=2))


def _workspace(settings: TrainingSettings) -> TrainingSettings:
    """The settings with their workspace made ready (copied, remote set, data pulled)."""
    from training_job.workspace import materialize

    ready = _run(lambda: materialize(settings.workspace, Path.cwd(), settings.dvc_remote))
    return settings.model_copy(update={"workspace": ready})


@app.command("freeze-reference")
def freeze_reference(
    raw: Annotated[Path, typer.Option(help="The original raw data file.")] = Path(
        "data/raw/cal_housing.data"
    ),
    out: ReferenceOpt = REFERENCE,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:
    """Once: write the test split of the original data as the frozen reference set (then
    `dvc add` and `dvc push` it). Refuses to overwrite it."""
    from training_job.reference import freeze

    prepare_params = load_params(params).prepare
    rows = _run(
        lambda: freeze(
            raw,
            out,
            prepare_params.split_salt,
            prepare_params.test_percent,
            prepare_params.val_percent,
        )
    )
    typer.echo(f"{out}: {rows} held-out rows frozen; now `dvc add` and `dvc push` them")


@app.command()
def pipeline(
    raw: Annotated[
        Path | None, typer.Option(help=f"{RAW_HELP} [default: WORKSPACE/data/raw]")
    ] = None,
    params: Annotated[
        Path | None, typer.Option(help="params.yaml [default: WORKSPACE/params.yaml]")
    ] = None,
    workspace: Annotated[
        Path | None,
        typer.Option(
            help="Folder under which prepared data, models, metrics, plots go "
            "[default: TRAINING_WORKSPACE, else the current folder]."
        ),
    ] = None,
) -> None:
    """The whole pipeline in one process: prepare, train, evaluate, register.

    `dvc repro` runs the same steps as separate stages and skips those whose inputs did not
    change; this command always runs all four (what the initial Kubernetes Job does).
    """
    from training_job.pipeline import Layout, run_pipeline
    from training_job.register import as_dict

    settings = TrainingSettings()
    if workspace is None:
        settings = _workspace(settings)
        workspace = settings.workspace
    raw = raw or workspace / RAW
    params = params or workspace / DEFAULT_PARAMS
    # A workspace without its own reference set (a scratch folder for the outputs) uses the
    # one of the current folder, as --raw and --params may.
    reference = workspace / REFERENCE if (workspace / REFERENCE).exists() else REFERENCE
    result = _run(
        lambda: run_pipeline(
            raw, Layout(workspace), load_params(params), settings, workspace / TUNED, reference
        )
    )
    typer.echo(json.dumps(as_dict(result), indent=2))


@app.command()
def retrain(
    params: ParamsOpt = DEFAULT_PARAMS,
    force: Annotated[
        bool, typer.Option(help="Run even if no trigger fired, when disabled or too soon.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the decision; change nothing.")] = False,
    source: Annotated[str, typer.Option(help="Who asked (cli, cron, api): recorded.")] = "cli",
) -> None:
    """Decide whether to retrain (new data, live error, drift, age), then maybe run the
    pipeline, gate and promote. Exit 0 when done or skipped, 4 when a run is already going."""
    from training_job.retrain import retrain as run_retrain

    settings = _workspace(TrainingSettings())
    result = _run(
        lambda: run_retrain(
            settings, load_params(params), force=force, dry_run=dry_run, source=source
        )
    )
    typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
    if result.outcome == Outcome.ALREADY_RUNNING:
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(4)


@app.command("promote-challenger")
def promote_challenger(
    params: ParamsOpt = DEFAULT_PARAMS,
    dry_run: Annotated[bool, typer.Option(help="Print the comparison; change nothing.")] = False,
) -> None:
    """Promote @challenger to @champion if its live R² (from feedback in the serving
    database) beats the champion's by the policy's margin; recorded as a decision. Exit 0
    when done (promoted or not), 4 when a retraining run holds the lease."""
    from training_job.promote import promote_challenger as run_promote

    settings = TrainingSettings()
    model_name = load_params(params).registration.model_name
    result = _run(lambda: run_promote(settings, model_name, dry_run=dry_run))
    typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
    if result.outcome == Outcome.ALREADY_RUNNING:
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(4)


@app.command()
def status(
    params: ParamsOpt = DEFAULT_PARAMS,
    require_champion: Annotated[
        bool, typer.Option(help="Exit 3 when the registry has no @champion.")
    ] = False,
) -> None:
    """Show the registered model's aliases and the champion's scores."""
    from training_job.registry import describe

    settings = TrainingSettings()
    info = _run(lambda: describe(load_params(params).registration.model_name, settings))
    typer.echo(json.dumps(info, indent=2))
    if require_champion and info.get("champion") is None:
        raise typer.Exit(3)
