"""Write throughput of the records layer, on SQLite and on PostgreSQL (not a test).

    python tests/model_server/records/bench_records.py [rows] [threads]

For each database: rows submitted by `threads` request threads (1 to 4 instances each, as
the server does) to a RecordWriter with its default batch size, timed from the first submit
until flush() returns, i.e. until every row is committed. Also the bare store.write_batch
rate for comparison. PostgreSQL gets a throwaway database on 127.0.0.1:5432.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from housing.servingdb import PredictionRecord, RecordStore
from model_server.records.writer import RecordWriter
from tests.support.records import new_records
from tests.support.servers import postgres_database


def through_writer(url: str, rows: int, threads: int) -> float:
    with RecordStore(url) as store:
        store.migrate()
        writer = RecordWriter(store)
        writer.start()
        work = [new_records(rows // threads) for _ in range(threads)]

        def serve(records: list[PredictionRecord]) -> None:
            i = 0
            while i < len(records):
                size = 1 + i % 4
                writer.submit(records[i : i + size])
                i += size

        workers = [threading.Thread(target=serve, args=(w,)) for w in work]
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert writer.flush(600)
        elapsed = time.perf_counter() - began
        writer.stop()
        assert store.count() == sum(len(w) for w in work)
        return sum(len(w) for w in work) / elapsed


def bare_batches(url: str, rows: int, batch: int = 500) -> float:
    with RecordStore(url) as store:
        store.migrate()
        batches = [new_records(batch) for _ in range(rows // batch)]
        began = time.perf_counter()
        for records in batches:
            store.write_batch(records)
        return rows // batch * batch / (time.perf_counter() - began)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'records.db'}"
        print(f"sqlite     writer {through_writer(url, rows, threads):8.0f} rows/s", flush=True)
        url = f"sqlite:///{Path(folder) / 'bare.db'}"
        print(f"sqlite     batch  {bare_batches(url, rows):8.0f} rows/s", flush=True)
    with postgres_database() as url:
        print(f"postgresql writer {through_writer(url, rows, threads):8.0f} rows/s", flush=True)
    with postgres_database() as url:
        print(f"postgresql batch  {bare_batches(url, rows):8.0f} rows/s", flush=True)


if __name__ == "__main__":
    main()
