"""Fixtures shared by the whole suite, from small to large.

The largest is `trained_registry`: the real pipeline run once per test session on the real
data into a temporary MLflow store, giving a registry with a @champion that the pipeline,
server and loop tests all use (read-only: tests that change the registry make their own).

`slow` is applied here, not by hand: to every test that needs the trained registry, or whose
code or fixtures start a server (the model server, MLflow, Prometheus, the pipeline as a
process), so that `pytest -m "not slow"` is the fast suite.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from types import CodeType

import pytest

from tests.support.pipeline import TrainedRegistry, run_pipeline
from tests.support.server import COMPILED_TREES_ENV


def pytest_configure(config: pytest.Config) -> None:
    # One compiled-trees cache for the whole run, shared by every test server and by the xdist
    # workers (they inherit this environment): the champion compiles once, not once a server.
    if hasattr(config, "workerinput") or COMPILED_TREES_ENV in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="compiled-trees-")
    os.environ[COMPILED_TREES_ENV] = folder
    config.stash[_TREES_DIR] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_TREES_DIR, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


_TREES_DIR = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> TrainedRegistry:
    root = tmp_path_factory.mktemp("trained")
    state = root / "state"
    run_pipeline(root, state)
    return TrainedRegistry(
        workspace=root,
        state_dir=state,
        tracking_uri=f"sqlite:///{state / 'mlflow.db'}",
    )


# What makes a test slow: the trained registry (directly or through a fixture), or calling one
# of these helpers (tests/support/) in the test or in one of its fixtures.
SLOW_FIXTURES = frozenset({"trained_registry"})
SLOW_CALLS = frozenset(
    {"start_server", "mlflow_server", "start_prometheus", "run_pipeline", "run_training_job"}
)


def _names(code: CodeType) -> Iterator[str]:
    """Global names `code` (and the functions nested in it) refers to."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names(const)


def _is_slow(item: pytest.Function) -> bool:
    if SLOW_FIXTURES & set(item.fixturenames):
        return True
    functions = [item.function]
    for defs in item._fixtureinfo.name2fixturedefs.values():
        functions.extend(d.func for d in defs)
    return any(
        SLOW_CALLS & set(_names(code))
        for code in (getattr(f, "__code__", None) for f in functions)
        if code is not None
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and _is_slow(item):
            item.add_marker(pytest.mark.slow)
