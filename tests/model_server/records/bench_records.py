"""Write throughput of the records layer, on SQLite and on PostgreSQL (not a test).

    python tests/model_server/records/bench_records.py [rows] [threads]

For each database: requests of 1 to 4 instances (one record each, as the server builds
them), `rows` instances in all, submitted by `threads` request threads to a RecordWriter with
its default batch size, timed from the first submit until flush() returns, i.e. until every
request is committed; in instances per second. Also the bare store.write_batch rate, for
100-instance requests (as numpy arrays, as the server hands them over), for comparison.
PostgreSQL gets a throwaway database on 127.0.0.1:5432.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from housing.contract import FEATURES
from housing.servingdb import RecordStore, RequestRecord
from model_server.records.writer import RecordWriter
from tests.support.records import new_record
from tests.support.servers import postgres_database


def through_writer(url: str, rows: int, threads: int) -> float:
    with RecordStore(url) as store:
        store.migrate()
        writer = RecordWriter(store)
        writer.start()
        work = [requests(rows // threads) for _ in range(threads)]

        def serve(records: list[RequestRecord]) -> None:
            for record in records:
                writer.submit([record])

        workers = [threading.Thread(target=serve, args=(w,)) for w in work]
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert writer.flush(600)
        elapsed = time.perf_counter() - began
        writer.stop()
        instances = sum(len(r.outputs) for w in work for r in w)
        assert store.count() == instances
        return instances / elapsed


def requests(instances: int) -> list[RequestRecord]:
    """Requests of 1 to 4 instances, `instances` in all (about)."""
    made, total = [], 0
    while total < instances:
        size = 1 + len(made) % 4
        made.append(new_record(size))
        total += size
    return made


def bare_batches(url: str, rows: int, batch: int = 5, size: int = 100) -> float:
    """Instances per second through write_batch, `batch` requests of `size` instances a
    transaction."""
    x = np.random.default_rng(0).uniform(0, 10, (size, len(FEATURES)))
    y = np.random.default_rng(1).uniform(0, 5, size)
    with RecordStore(url) as store:
        store.migrate()
        batches = [
            [new_record(size, features=FEATURES, inputs=x, outputs=y) for _ in range(batch)]
            for _ in range(rows // (batch * size))
        ]
        began = time.perf_counter()
        for records in batches:
            store.write_batch(records)
        return len(batches) * batch * size / (time.perf_counter() - began)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'records.db'}"
        print(
            f"sqlite     writer {through_writer(url, rows, threads):8.0f} instances/s", flush=True
        )
        url = f"sqlite:///{Path(folder) / 'bare.db'}"
        print(f"sqlite     batch  {bare_batches(url, rows):8.0f} instances/s", flush=True)
    with postgres_database() as url:
        print(
            f"postgresql writer {through_writer(url, rows, threads):8.0f} instances/s", flush=True
        )
    with postgres_database() as url:
        print(f"postgresql batch  {bare_batches(url, rows):8.0f} instances/s", flush=True)


if __name__ == "__main__":
    main()
