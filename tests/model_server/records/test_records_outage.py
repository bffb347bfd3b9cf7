"""Real outages: PostgreSQL cut off behind a TCP proxy, SQLite locked by another process.
Not one row may be lost, whether the database comes back while the writer runs or only
after the server has stopped and started again."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from housing.servingdb import RecordStore, RequestRecord
from housing.servingdb.models import request_log
from model_server.records.writer import RecordWriter
from tests.support.records import (
    TcpProxy,
    WriterFactory,
    holding_the_write_lock,
    new_records,
    spill_segments,
    wait_until,
)


def stored_ids(store: RecordStore) -> list[str]:
    with store.engine.connect() as connection:
        return list(connection.execute(sa.select(request_log.c.id)).scalars())


def submit_concurrently(writer: RecordWriter, batches: list[list[RequestRecord]]) -> None:
    def serve(records: list[RequestRecord]) -> None:
        for i in range(0, len(records), 2):
            writer.submit(records[i : i + 2])

    threads = [threading.Thread(target=serve, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


@pytest.mark.postgres
def test_postgres_outage_spills_and_recovers_without_losing_a_row(
    postgres_url: str, pg_proxy: TcpProxy, make_writer: WriterFactory, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    with RecordStore(postgres_url) as direct, RecordStore(pg_proxy.route(postgres_url)) as store:
        direct.migrate()
        writer = make_writer(store, batch_size=50, max_buffer=200, spill_dir=spill)
        writer.start()
        before = new_records(500)
        writer.submit(before)
        assert writer.flush(10)

        pg_proxy.stop()  # connections cut, new ones refused
        during = [new_records(500) for _ in range(4)]
        submit_concurrently(writer, during)
        wait_until(lambda: writer.failed_batches_total >= 2 and writer.spilled > 0)
        assert writer.backlog == 2000 and direct.count() == 500
        assert spill_segments(spill)

        pg_proxy.start()
        assert writer.flush(30)
        expected = {r.id for r in before} | {r.id for batch in during for r in batch}
        assert len(stored_ids(direct)) == 2500 and set(stored_ids(direct)) == expected
        assert spill_segments(spill) == [] and writer.dropped_total == 0
        assert writer.written_total == 2500


@pytest.mark.postgres
def test_postgres_outage_across_a_restart_loses_no_row(
    postgres_url: str, pg_proxy: TcpProxy, make_writer: WriterFactory, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    with RecordStore(postgres_url) as direct:
        direct.migrate()
    pg_proxy.stop()
    with RecordStore(pg_proxy.route(postgres_url), connect_timeout=2) as store:
        writer = make_writer(store, batch_size=50, max_buffer=300, spill_dir=spill)
        writer.start()
        records = new_records(1000)
        submit_concurrently(writer, [records[:500], records[500:]])
        wait_until(lambda: writer.failed_batches_total >= 1)
        writer.stop(timeout=0.5)  # SIGTERM while the database is still away
        assert writer.spilled == writer.backlog == 1000 and writer.dropped_total == 0

    pg_proxy.start()
    with RecordStore(pg_proxy.route(postgres_url)) as store:
        restarted = make_writer(store, spill_dir=spill)
        restarted.start()
        assert restarted.flush(30)
        assert sorted(stored_ids(store)) == sorted(r.id for r in records)
        assert spill_segments(spill) == []


def test_a_locked_sqlite_database_delays_rows_and_loses_none(
    sqlite_url: str, make_writer: WriterFactory, tmp_path: Path
) -> None:
    with RecordStore(sqlite_url, busy_timeout=0.05) as store:
        store.migrate()
        writer = make_writer(store, batch_size=50, max_buffer=200, spill_dir=tmp_path / "spill")
        writer.start()
        database = sa.make_url(sqlite_url).database
        assert database is not None
        records = new_records(1000)
        with holding_the_write_lock(database):
            submit_concurrently(writer, [records[:500], records[500:]])
            wait_until(lambda: writer.failed_batches_total >= 2 and writer.spilled > 0)
            assert store.count() == 0
        assert writer.flush(30)
        assert sorted(stored_ids(store)) == sorted(r.id for r in records)
