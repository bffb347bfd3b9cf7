"""The production shape: the pipeline against an `mlflow server` on PostgreSQL that serves
its own artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import psycopg
import pytest
from mlflow import MlflowClient

from housing.contract import PROFILE_FILENAME, PROFILE_PATH
from tests.support.pipeline import run_pipeline
from tests.support.servers import mlflow_server, postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_pipeline_against_mlflow_server_on_postgres(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    with (
        postgres_database("mlflow") as db_url,
        mlflow_server(db_url, artifacts, tmp_path / "mlflow.log") as url,
    ):
        run_pipeline(tmp_path / "ws", tmp_path / "state", tracking_uri=url)

        client = MlflowClient(tracking_uri=url)
        champion = client.get_model_version_by_alias("california-housing", "champion")
        assert float(champion.tags["test_r2"]) >= 0.83
        run = client.get_run(champion.run_id)
        # Artifacts go through the server (proxied), not to a path the client must reach.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        mlflow.set_tracking_uri(url)
        local = Path(mlflow.artifacts.download_artifacts("models:/california-housing@champion"))
        profile = json.loads((local / PROFILE_PATH).read_text())
        assert len(profile["features"]) == 8
        # ... and they are stored where the server keeps them.
        assert list(artifacts.rglob(PROFILE_FILENAME))

        with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
            (versions,) = conn.execute("SELECT count(*) FROM model_versions").fetchone()  # type: ignore[misc]
            (alias_version,) = conn.execute(  # type: ignore[misc]
                "SELECT version FROM registered_model_aliases WHERE alias = 'champion'"
            ).fetchone()
        assert versions == 1 and str(alias_version) == str(champion.version)
