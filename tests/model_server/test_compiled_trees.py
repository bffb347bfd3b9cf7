"""Compiled trees: the champion's booster compiled by lleaves in a child process, verified
against the model, swapped in over ONNX; refused (ONNX keeps serving) when anything is off."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMRegressor

from housing.contract import FEATURES
from model_server.backends import build_onnx, verification_sample
from model_server.compiled_trees import (
    COMPILED_TOLERANCE,
    ROWS_MAX,
    CompiledTrees,
    cache_key,
    load_trees,
)
from model_server.loader import LoadedModel, ModelRef
from tests.support.server import (
    COMPILED_TREES_ENV,
    MODEL,
    ROWS,
    ServerProcess,
    start_server,
    wait_for,
)

# The compile itself takes ~20-40 s on two busy cores.
COMPILE_SECONDS = 240.0


def domain_rows(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = np.array([0.5, 1, 0.8, 0.3, 3, 0.7, 32.5, -124.4])
    high = np.array([15, 52, 140, 35, 35700, 1240, 42, -114.3])
    x = rng.uniform(low, high, size=(n, len(FEATURES)))
    x[:, 3] = np.minimum(x[:, 3], x[:, 2])  # the contract: AveBedrms <= AveRooms
    return x


# -- the manager in this process, on the session's LightGBM champion -----------------------


class Slot:
    """The served-version reference HousingModel keeps, reduced to what CompiledTrees uses."""

    def __init__(self) -> None:
        self.loaded: LoadedModel | None = None
        self.swaps: list[LoadedModel] = []

    def publish(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def upgrade(self, old: LoadedModel, new: LoadedModel) -> bool:
        if self.loaded is not old:
            return False
        self.loaded = new
        self.swaps.append(new)
        return True


@pytest.fixture(scope="module")
def champion(candidates: dict[str, Any]) -> LoadedModel:
    model = candidates["lightgbm"]
    x = domain_rows(200)
    sample = verification_sample(x[:1], x.min(axis=0), x.max(axis=0))
    return LoadedModel(
        ref=ModelRef(MODEL, "1", "run", "source"),
        model=model,
        schema=None,  # type: ignore[arg-type]  (CompiledTrees reads model and sample only)
        profile=None,  # type: ignore[arg-type]
        predictor=build_onnx(model, len(FEATURES)),
        onnx_refused=None,
        loaded_at=datetime.now(UTC),
        load_seconds=0.0,
        sample=sample,
    )


@pytest.fixture(scope="module")
def shared_cache() -> Path:
    """The run's cache (tests/conftest.py): the champion compiles once for all tests."""
    return Path(os.environ[COMPILED_TREES_ENV])


def serve(champion: LoadedModel, cache: Path, *, enabled: bool = True) -> tuple[Slot, Any]:
    slot = Slot()
    trees = CompiledTrees(slot.publish, slot.upgrade, enabled=enabled, cache_dir=cache)
    trees.publish(champion)
    return slot, trees


def settled(slot: Slot) -> LoadedModel:
    """The served version once the compiled trees are swapped in or refused."""
    wait_for(
        lambda: bool(slot.swaps), COMPILE_SECONDS, "the compiled trees to be swapped or refused"
    )
    assert slot.loaded is not None
    return slot.loaded


def object_file(champion: LoadedModel, cache: Path) -> Path:
    booster = champion.model.steps[-1][1].booster_
    return cache / f"{cache_key(booster.model_to_string())}.o"


def test_swaps_to_compiled_trees_that_predict_like_the_model(
    champion: LoadedModel, shared_cache: Path
) -> None:
    slot, trees = serve(champion, shared_cache)
    try:
        served = settled(slot)
    finally:
        trees.stop()
    assert served.backend == "lleaves", served.compiled_refused
    assert served.compiled_refused is None and served.version == champion.version
    x = domain_rows(2000, seed=7)
    expected = champion.model.predict(x)
    assert np.max(np.abs(served.predictor.predict(x) - expected)) <= COMPILED_TOLERANCE
    for size in range(1, ROWS_MAX + 2):  # the rows path, and the batch path just past it
        chunks = [served.predictor.predict(x[i : i + size]) for i in range(0, 300, size)]
        assert np.max(np.abs(np.concatenate(chunks) - expected[:300])) <= COMPILED_TOLERANCE
    assert object_file(champion, shared_cache).exists()


def test_a_corrupt_cache_file_is_refused_and_onnx_keeps_serving(
    champion: LoadedModel, shared_cache: Path, tmp_path: Path
) -> None:
    good = object_file(champion, shared_cache)
    wait_for(good.exists, COMPILE_SECONDS, "the shared compile")
    bad = object_file(champion, tmp_path)
    data = bytearray(good.read_bytes())
    data[1000:200_000] = bytes(199_000)  # the code zeroed: LLVM aborts loading it, or worse
    bad.write_bytes(bytes(data))
    slot, trees = serve(champion, tmp_path)
    try:
        served = settled(slot)
    finally:
        trees.stop()
    assert served.backend == "onnxruntime" and served.predictor is champion.predictor
    assert served.compiled_refused is not None
    assert "failed to load in the compile child" in served.compiled_refused
    # Set aside, so that the next load compiles again instead of failing the same way.
    assert not bad.exists() and list(tmp_path.glob(f"{bad.name}.refused-*"))


def test_a_foreign_cache_file_is_refused(champion: LoadedModel, tmp_path: Path) -> None:
    """A valid object of another model under the champion's key: it loads, and differs."""
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(300, len(FEATURES) + 10))
    other = LGBMRegressor(n_estimators=3, num_leaves=4, verbose=-1).fit(x, x[:, 0])
    model_file = tmp_path / "other.txt"
    model_file.write_text(other.booster_.model_to_string())
    foreign = tmp_path / "foreign.o"
    load_trees(model_file, foreign)  # compiles it (a few trees: a second)
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(foreign, object_file(champion, cache))
    slot, trees = serve(champion, cache)
    try:
        served = settled(slot)
    finally:
        trees.stop()
    assert served.backend == "onnxruntime"
    assert served.compiled_refused is not None and "differ from the model" in str(
        served.compiled_refused
    )


def test_turned_off_keeps_onnx_and_says_so(champion: LoadedModel, tmp_path: Path) -> None:
    slot, trees = serve(champion, tmp_path, enabled=False)
    trees.stop()
    assert slot.loaded is not None and slot.loaded.backend == "onnxruntime"
    assert slot.loaded.compiled_refused == "turned off (MODEL_SERVER_COMPILED_TREES=false)"
    assert trees.child_pid is None and not list(tmp_path.iterdir())


# -- a real server ---------------------------------------------------------------------------


def health(server: ServerProcess) -> dict[str, Any]:
    body: dict[str, Any] = server.get("/health").json()
    return body


def test_the_shared_server_swaps_to_compiled_trees(
    served: ServerProcess, candidates: dict[str, Any]
) -> None:
    wait_for(lambda: health(served)["backend"] == "lleaves", COMPILE_SECONDS, "lleaves")
    assert health(served)["compiled_refused"] is None
    assert (
        served.metric(
            "model_server_model_info",
            model_version="1",
            run_id=health(served)["run_id"],
            backend="lleaves",
        )
        == 1.0
    )
    frame = pd.DataFrame(domain_rows(50, seed=11), columns=list(FEATURES))
    body = {"instances": frame.to_numpy().tolist()}
    response = served.post(f"/v1/models/{MODEL}:predict", json=body)
    assert response.status_code == 200, response.text
    expected = candidates["lightgbm"].predict(frame)
    got = np.array(response.json()["predictions"])
    assert np.max(np.abs(got - expected)) <= COMPILED_TOLERANCE
    one = served.post(f"/v1/models/{MODEL}:predict", json={"instances": body["instances"][:1]})
    assert abs(one.json()["predictions"][0] - expected[0]) <= COMPILED_TOLERANCE
    assert "now served by compiled trees" in served.log()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_the_compile_child_is_gone_after_stop(
    trained_registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An empty cache: the child is still compiling when the server stops."""
    workdir = tmp_path_factory.mktemp("trees-stop")
    server = start_server(
        workdir, trained_registry.tracking_uri, compiled_trees_dir=str(workdir / "cache")
    )
    try:
        server.wait_ready()
        wait_for(lambda: "compiling the trees" in server.log(), 60, "the compile child")
        line = next(x for x in server.log().splitlines() if "compiling the trees" in x)
        pid = int(line.rsplit("(child ", 1)[1].rstrip(")"))
        assert alive(pid)
        assert health(server)["backend"] == "onnxruntime"  # serving while it compiles
    finally:
        code = server.stop()
    assert code == 0
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)


def test_a_server_with_the_setting_off_keeps_onnx(
    trained_registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("trees-off")
    server = start_server(workdir, trained_registry.tracking_uri, compiled_trees="false")
    try:
        server.wait_ready()
        body = health(server)
        assert body["backend"] == "onnxruntime"
        assert body["compiled_refused"] == "turned off (MODEL_SERVER_COMPILED_TREES=false)"
        response = server.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROWS[0]]})
        assert response.status_code == 200, response.text
        assert "compiling the trees" not in server.log()
    finally:
        assert server.stop() == 0
