"""`python -m model_server` with candidate optimizations patched in at start-up, to measure
them before anyone changes model_server/ (nothing under model_server/ is edited). Used by
bench/serving.py as the diagnostic server `ours-whatif`; BENCH_WHATIF names the patches:

- nice: the log writer at nice BENCH_WHATIF_NICE, not WRITER_NICE (5): 10 by default, as the
  signals thread (measured 2026-12-04: starved under saturation, the log fell 350,000
  predictions behind in 8 s of 100-row requests);
- batch: the log writer under SCHED_BATCH (its fair share of the core, but no preempting the
  event loop when it wakes);
- uvloop: the server's event loop from uvloop instead of asyncio's;
- switch: the GIL's switch interval at 1 ms, not 5 (a thread holding the GIL, the log writer
  building a batch, makes the event loop wait up to the interval: the p99 of small requests);
- writer-batch: the log writer's batch at BENCH_WHATIF_WRITER_BATCH predictions, not
  WRITER_BATCH (4,000);
- writer-rows: the log writer's batch at BENCH_WHATIF_WRITER_ROWS requests, not
  WRITER_BATCH_ROWS (100);
- nowrite: the log's store writes nothing (a diagnostic of what the writer costs the request
  path: the log is then empty and bench/serving.py reports the rows as lost);
- nocoalesce: every request of up to INLINE_MAX_INSTANCES predicted alone on the event loop,
  without the Coalescer (one row by the rows path, more by GeoFeatures.transform and lleaves'
  predict). Before the Coalescer that bound was 8 and bigger requests went to the pool: set
  inline-max too (BENCH_WHATIF_INLINE_MAX=8) to measure that old path;
- inline-max: requests of up to BENCH_WHATIF_INLINE_MAX instances (128 by default, not
  INLINE_MAX_INSTANCES) on the event loop and coalesced, not in the pool;
- nogc: no cyclic garbage collection at all (a diagnostic of the collector's pauses only: a
  server must not run so).

The patches `freeze` and `inline` of 2026-11-26 (bench/README.md) became the server's own
behaviour (model.freeze_heap; small requests on the event loop, since coalesced) and are gone.
It patches private parts of model_server (HousingModel.predict/_infer, the log
writer and signals threads) and may need updating when they change.
"""

from __future__ import annotations

import gc
import os
import runpy
import sys
from typing import Any

from model_server.model import HousingModel


def patch_nice() -> None:
    from model_server.records import writer

    writer.WRITER_NICE = int(os.environ.get("BENCH_WHATIF_NICE", "10"))


def patch_batch() -> None:
    import threading

    from model_server.records.writer import RecordWriter

    def batched(run: Any) -> Any:
        def wrapper(self: Any) -> None:
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_BATCH, os.sched_param(0))
            run(self)

        return wrapper

    RecordWriter._run_writer = batched(RecordWriter._run_writer)


def patch_uvloop() -> None:
    import asyncio

    import uvloop

    def run(main: Any, **kwargs: Any) -> Any:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)

    asyncio.run = run


def patch_switch() -> None:
    sys.setswitchinterval(0.001)


def patch_writer_batch() -> None:
    from model_server import server

    server.WRITER_BATCH = int(os.environ["BENCH_WHATIF_WRITER_BATCH"])


def patch_writer_rows() -> None:
    from model_server import server

    server.WRITER_BATCH_ROWS = int(os.environ["BENCH_WHATIF_WRITER_ROWS"])


def patch_nowrite() -> None:
    from housing.servingdb.store import RecordStore

    RecordStore.write_batch = lambda self, records: None  # type: ignore[method-assign]


def patch_nocoalesce() -> None:
    from model_server import compiled_trees, model

    compiled_trees.ROWS_MAX = 1  # one row by the rows path, as before
    predict = HousingModel.predict

    async def alone(self: HousingModel, job: Any, *args: Any, **kwargs: Any) -> Any:
        if model.instance_count(job) <= model.INLINE_MAX_INSTANCES:
            return self._infer(job)
        return await predict(self, job, *args, **kwargs)

    HousingModel.predict = alone


def patch_inline_max() -> None:
    from model_server import model

    model.INLINE_MAX_INSTANCES = int(os.environ.get("BENCH_WHATIF_INLINE_MAX", "128"))


def patch_nogc() -> None:
    gc.disable()


PATCHES = {
    "nice": patch_nice,
    "batch": patch_batch,
    "uvloop": patch_uvloop,
    "switch": patch_switch,
    "writer-batch": patch_writer_batch,
    "writer-rows": patch_writer_rows,
    "nowrite": patch_nowrite,
    "nogc": patch_nogc,
    "nocoalesce": patch_nocoalesce,
    "inline-max": patch_inline_max,
}

if __name__ == "__main__":
    for name in filter(None, os.environ.get("BENCH_WHATIF", "").split(",")):
        PATCHES[name]()
    sys.argv = ["model_server"]
    runpy.run_module("model_server", run_name="__main__", alter_sys=True)
