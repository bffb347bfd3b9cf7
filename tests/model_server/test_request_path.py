"""The request path's choices: which requests run on the event loop, the heap frozen after a
load, and the prediction ids."""

from __future__ import annotations

import asyncio
import gc
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from kserve import InferInput, InferRequest

from model_server.coalescer import Coalescer
from model_server.model import (
    INLINE_MAX_INSTANCES,
    HousingModel,
    Job,
    freeze_heap,
    instance_count,
)
from model_server.protocol import Protocol


def job(protocol: Protocol, payload: Any) -> Job:
    return Job(loaded=None, protocol=protocol, payload=payload, request_id="r", started=None)  # type: ignore[arg-type]


def v2(*shapes: list[int]) -> InferRequest:
    inputs = [InferInput(f"x{i}", shape, "FP64", None) for i, shape in enumerate(shapes)]
    return InferRequest("m", inputs)


@pytest.mark.parametrize(
    ("request_job", "count"),
    [
        (job("v1", {"instances": [[0.0] * 8]}), 1),
        (job("v1", {"instances": [{}] * 100}), 100),
        (job("v1", {"instances": "not a list"}), 1 << 30),
        (job("v1", b"raw body"), 1 << 30),
        (job("v2", v2([3, 8])), 3),
        (job("v2", v2([5], [5, 1])), 5),
        (job("v2", v2([])), 1 << 30),
    ],
)
def test_instance_count_reads_the_outer_shape(request_job: Job, count: int) -> None:
    assert instance_count(request_job) == count


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(1)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


class Rows:
    """The predictor's side of a request: how many rows each call had, and on which thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.calls.append((len(x), threading.current_thread().name))
        return np.zeros(len(x))


def test_small_requests_run_inline_together_and_large_ones_in_the_pool() -> None:
    executor = CountingExecutor()
    model = HousingModel("m", None, None, executor, 1000)  # type: ignore[arg-type]
    predictor = Rows()
    loaded = SimpleNamespace(predictor=predictor)
    model._features = lambda job: np.zeros((len(job.payload["instances"]), 8))  # type: ignore[method-assign]
    model._settle = lambda job, x, predictions: len(predictions)  # type: ignore[method-assign]
    model._coalescer = Coalescer(lambda batch, x, predictions: [len(p) for _, _, p in batch])

    def sized(count: int) -> Job:
        return replace(job("v1", {"instances": [[0.0] * 8] * count}), loaded=loaded)

    async def small_ones() -> list[int]:
        return await asyncio.gather(*(model.predict(sized(n)) for n in (1, INLINE_MAX_INSTANCES)))

    try:
        assert asyncio.run(small_ones()) == [1, INLINE_MAX_INSTANCES]
        assert executor.submitted == 0
        assert predictor.calls == [(1 + INLINE_MAX_INSTANCES, "MainThread")]
        large = INLINE_MAX_INSTANCES + 1
        assert asyncio.run(model.predict(sized(large))) == large
        assert executor.submitted == 1
        assert predictor.calls[1][1] != "MainThread"
    finally:
        executor.shutdown()


def test_freezing_moves_the_live_heap_out_of_collections() -> None:
    try:
        gc.unfreeze()
        kept = [object() for _ in range(1000)]
        freeze_heap()
        assert gc.get_freeze_count() >= len(kept)
        freeze_heap()  # again (the next version): unfreezes first, then freezes what lives
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
