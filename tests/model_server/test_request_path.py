"""The request path's choices: which requests run on the event loop, the heap frozen after a
load, and the prediction ids."""

from __future__ import annotations

import asyncio
import gc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kserve import InferInput, InferRequest

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


def test_small_requests_run_inline_and_large_ones_in_the_pool() -> None:
    executor = CountingExecutor()
    model = HousingModel("m", None, None, executor, 1000)  # type: ignore[arg-type]
    model._infer = lambda job: job.request_id  # type: ignore[method-assign]
    small = job("v1", {"instances": [[0.0] * 8] * INLINE_MAX_INSTANCES})
    large = job("v1", {"instances": [[0.0] * 8] * (INLINE_MAX_INSTANCES + 1)})
    try:
        assert asyncio.run(model.predict(small)) == "r"
        assert executor.submitted == 0
        assert asyncio.run(model.predict(large)) == "r"
        assert executor.submitted == 1
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
