"""From a registry URI to a servable model: resolve, download, read the contract, compile.

A version is loaded completely (model, signature, profile, verified backend) into one
immutable `LoadedModel` before anyone may see it; the server then swaps a single reference.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from housing.contract import PROFILE_PATH, Profile, ProfileError, load_profile
from housing.urls import sqlite_file
from model_server.backends import Predictor, compile_predictor, verification_sample
from model_server.settings import MODEL_URI
from model_server.validation import ContractError, FeatureSchema

log = logging.getLogger(__name__)


class NotPublishedError(LookupError):
    """The registry answers, but the model or its alias does not exist (yet)."""


class TrackingStoreMissingError(ConnectionError):
    """The tracking store cannot be reached or does not exist yet."""


@dataclass(frozen=True)
class ModelRef:
    """One registered version, as the registry describes it."""

    name: str
    version: str
    run_id: str
    source: str
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedModel:
    """Everything one request needs, consistent with itself: never changed once built."""

    ref: ModelRef
    model: Any
    schema: FeatureSchema
    profile: Profile
    predictor: Predictor
    onnx_refused: str | None
    loaded_at: datetime
    load_seconds: float
    # Why compiled trees (model_server/compiled_trees.py) do not serve it, once known.
    compiled_refused: str | None = None
    # The rows every backend of this version is verified on (verification_sample).
    sample: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def backend(self) -> str:
        return self.predictor.backend


def _signature_inputs(mlmodel: Any) -> list[tuple[str, str]]:
    signature = mlmodel.signature
    if signature is None:
        raise ContractError("the model has no signature")
    names = signature.inputs.input_names()
    kinds = [t.name for t in signature.inputs.input_types()]
    return list(zip(names, kinds, strict=True))


def _example(mlmodel: Any, path: Path, names: tuple[str, ...]) -> np.ndarray:
    example = mlmodel.load_input_example(str(path))
    if example is None:
        return np.empty((0, len(names)))
    return np.asarray(example[list(names)], dtype=np.float64)


def read_version(ref: ModelRef, path: Path) -> LoadedModel:
    """Build a LoadedModel from a downloaded model directory."""
    import mlflow.sklearn
    from mlflow.models import Model

    started = time.perf_counter()
    mlmodel = Model.load(str(path))
    try:
        profile = load_profile(path / PROFILE_PATH)
    except ProfileError as exc:
        raise ContractError(str(exc)) from exc
    schema = FeatureSchema.from_contract(_signature_inputs(mlmodel), profile)
    model = mlflow.sklearn.load_model(str(path))
    trained_on = getattr(model, "feature_names_in_", None)
    if trained_on is not None and tuple(trained_on) != schema.names:
        raise ContractError(f"model was fitted on {tuple(trained_on)}, signature is {schema.names}")
    sample = verification_sample(
        _example(mlmodel, path, schema.names), schema.valid_min, schema.valid_max
    )
    predictor, refused = compile_predictor(model, sample)
    return LoadedModel(
        ref=ref,
        model=model,
        schema=schema,
        profile=profile,
        predictor=predictor,
        onnx_refused=refused,
        loaded_at=datetime.now(UTC),
        load_seconds=time.perf_counter() - started,
        sample=sample,
    )


class RegistryLoader:
    """Talks to one MLflow registry; used from the watcher's thread only."""

    def __init__(self, tracking_uri: str, model_uri: str) -> None:
        match = MODEL_URI.match(model_uri)
        if match is None:
            raise ValueError(f"not a registry model URI: {model_uri}")
        self.tracking_uri = tracking_uri
        self.model_uri = model_uri
        self.name: str = match["name"]
        self.alias: str | None = match["alias"]
        self.pinned: str | None = match["version"]
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            store = sqlite_file(self.tracking_uri)
            # Opening a missing SQLite file would create an empty MLflow store under the
            # training job's feet: wait for the job to create it instead.
            if store is not None and not store.exists():
                raise TrackingStoreMissingError(f"no MLflow store at {store} yet")
            import mlflow
            from mlflow import MlflowClient

            # Versions whose source is a logged model (models:/m-...) are resolved through
            # the process-wide tracking URI, whatever the client was given.
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def resolve(self) -> ModelRef:
        """The version the URI designates now."""
        from mlflow.exceptions import MlflowException

        client = self._connect()
        try:
            if self.alias is not None:
                found = client.get_model_version_by_alias(self.name, self.alias)
            else:
                found = client.get_model_version(self.name, self.pinned)
        except MlflowException as exc:
            if exc.error_code in {
                "RESOURCE_DOES_NOT_EXIST",
                "INVALID_PARAMETER_VALUE",
                "NOT_FOUND",
            }:
                raise NotPublishedError(f"{self.model_uri}: {exc.message}") from exc
            raise
        return ModelRef(
            name=self.name,
            version=str(found.version),
            run_id=str(found.run_id or ""),
            source=str(found.source or ""),
            tags=dict(found.tags or {}),
        )

    def load(self, ref: ModelRef) -> LoadedModel:
        """Download that exact version (not the alias, which may move meanwhile) and read it."""
        from mlflow.artifacts import download_artifacts

        location = self._connect().get_model_version_download_uri(ref.name, ref.version)
        with tempfile.TemporaryDirectory(prefix="model-server-") as tmp:
            path = download_artifacts(
                artifact_uri=location, dst_path=tmp, tracking_uri=self.tracking_uri
            )
            loaded = read_version(ref, Path(path))
        log.info(
            "loaded %s version %s (run %s) in %.1fs, backend %s",
            ref.name,
            ref.version,
            ref.run_id,
            loaded.load_seconds,
            loaded.backend,
        )
        return loaded
