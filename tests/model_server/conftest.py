"""Fixtures of the model server tests, small to large: the session's fitted candidates loaded
in this process, then one real server (`python -m model_server`) serving the session's
registry that the protocol, validation, operations and load tests share (they do not change
it). Tests that change the registry or stop the server start their own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import joblib
import pytest

from tests.support.server import MAX_INSTANCES, ServerProcess, start_server

# The session's TrainedRegistry (tests/conftest.py), typed loosely to avoid importing a conftest.
TrainedRegistry = Any


def pytest_configure(config: pytest.Config) -> None:
    # kserve.model_server parses sys.argv when first imported: keep pytest's options from it.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve  # noqa: F401
    finally:
        sys.argv = argv


@pytest.fixture(scope="session")
def candidates(trained_registry: TrainedRegistry) -> dict[str, Any]:
    """The fitted candidates of the session's pipeline run, by name."""
    folder = trained_registry.workspace / "models" / "candidates"
    return {p.stem: joblib.load(p) for p in folder.glob("*.joblib")}


@pytest.fixture(scope="session")
def served(
    trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The server on the session's registry, ready, with MAX_INSTANCES per request."""
    server = start_server(
        tmp_path_factory.mktemp("served"),
        trained_registry.tracking_uri,
        max_instances=str(MAX_INSTANCES),
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
