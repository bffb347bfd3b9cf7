"""RecordWriter against a fake store whose outages the tests control, then real databases."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from housing.servingdb import RecordStore, RequestRecord
from model_server.records.spill import FIRST_SEQ, REJECTED, SUFFIX, SpillQueue, encode
from model_server.records.writer import RecordWriter
from tests.support.records import (
    FakeStore,
    WriterFactory,
    failed_record,
    new_record,
    new_records,
    spill_segments,
    wait_until,
)


def ids(records: list[RequestRecord]) -> list[str]:
    return [record.id for record in records]


def spilled_ids(folder: Path) -> list[str]:
    """The ids in the spill files, in the order they would be replayed."""
    lines = [line for path in spill_segments(folder) for line in path.read_text().split()]
    return [json.loads(line)["id"] for line in lines]


def test_rows_are_written_in_order_in_batches(
    fake_store: FakeStore, make_writer: WriterFactory
) -> None:
    writer = make_writer(fake_store, batch_size=100)
    writer.start()
    records = new_records(1000)
    for record in records:
        writer.submit([record])
    assert writer.flush(10)
    assert fake_store.ids == ids(records)
    assert max(fake_store.batch_sizes) <= 100
    assert (writer.written_total, writer.backlog, writer.failed_batches_total) == (1000, 0, 0)


def test_a_partial_batch_goes_out_after_flush_interval(
    fake_store: FakeStore, make_writer: WriterFactory
) -> None:
    writer = make_writer(fake_store, batch_size=500, flush_interval=0.1)
    writer.start()
    records = new_records(3)
    writer.submit(records)
    wait_until(lambda: fake_store.ids == ids(records), timeout=2.0)


def test_submit_never_raises(fake_store: FakeStore, make_writer: WriterFactory) -> None:
    def broken() -> Iterator[RequestRecord]:
        yield new_record()
        raise RuntimeError("a generator that breaks half way")

    writer = make_writer(fake_store)
    writer.start()
    single = new_record()
    for junk in (None, 5, "text", [None, "x", 3], broken(), [], single):
        writer.submit(junk)  # type: ignore[arg-type]
    assert writer.flush(5)
    assert fake_store.ids == [single.id]


def test_submit_never_waits_for_the_database(
    fake_store: FakeStore, make_writer: WriterFactory
) -> None:
    fake_store.gate.clear()  # every write hangs until the gate opens
    writer = make_writer(fake_store, batch_size=50)
    writer.start()
    records = new_records(20_000)
    slowest = 0.0
    for start in range(0, len(records), 4):
        began = time.perf_counter()
        writer.submit(records[start : start + 4])
        slowest = max(slowest, time.perf_counter() - began)
    assert slowest < 0.5  # the database never answers: any wait on it would be endless
    assert writer.backlog == 20_000
    fake_store.gate.set()
    assert writer.flush(20)
    assert fake_store.ids == ids(records)


def test_an_outage_delays_rows_and_loses_none(
    fake_store: FakeStore, make_writer: WriterFactory
) -> None:
    fake_store.down = True
    writer = make_writer(fake_store, batch_size=20)
    writer.start()
    records = new_records(250)
    writer.submit(records)
    wait_until(lambda: writer.failed_batches_total >= 3)
    assert not writer.flush(0.1)
    assert fake_store.ids == [] and writer.backlog == 250
    fake_store.down = False
    assert writer.flush(10)
    assert fake_store.ids == ids(records)
    assert writer.written_total == 250 and writer.dropped_total == 0


def test_overflow_spills_to_disk_and_replays_in_order(
    fake_store: FakeStore, make_writer: WriterFactory, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    fake_store.down = True
    writer = make_writer(fake_store, batch_size=10, max_buffer=100, spill_dir=spill)
    writer.start()
    records = new_records(1000)
    for start in range(0, 1000, 7):
        writer.submit(records[start : start + 7])
    # Memory never holds much more than max_buffer; the rest is on disk.
    wait_until(lambda: writer.backlog - writer.spilled <= 100 + 10)
    assert writer.backlog == 1000 and writer.spilled >= 1000 - 110
    lines = [line for path in spill_segments(spill) for line in path.read_text().splitlines()]
    assert len(lines) == writer.spilled
    # On disk: what followed the batch in flight, in order.
    on_disk = [json.loads(line)["id"] for line in lines]
    offset = ids(records).index(on_disk[0])
    assert offset <= 10 and on_disk == ids(records)[offset : offset + len(on_disk)]
    fake_store.down = False
    assert writer.flush(10)
    assert fake_store.ids == ids(records)
    assert spill_segments(spill) == []
    assert writer.spilled_total >= 890 and writer.dropped_total == 0


def stopped_in_an_outage(
    make_writer: WriterFactory, records: list[RequestRecord], **options: Any
) -> RecordWriter:
    """A writer given `records` while its database is down, stopped before it comes back."""
    down = FakeStore()
    down.down = True
    writer = make_writer(down, batch_size=10, **options)
    writer.start()
    writer.submit(records)
    wait_until(lambda: writer.failed_batches_total >= 1)
    writer.stop(timeout=0.2)
    return writer


def test_stop_during_an_outage_keeps_every_row_for_the_next_start(
    make_writer: WriterFactory, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    records = new_records(300)
    first = stopped_in_an_outage(make_writer, records, max_buffer=100, spill_dir=spill)
    assert first.dropped_total == 0
    on_disk = spilled_ids(spill)
    assert on_disk == ids(records)  # the batch in flight was put first

    up = FakeStore()
    second = make_writer(up, batch_size=10, spill_dir=spill)
    second.start()
    assert second.flush(10)
    assert up.ids == ids(records)
    assert spill_segments(spill) == [] and second.backlog == 0


def test_spill_files_stop_at_their_limit_and_rows_past_it_are_counted_as_dropped(
    fake_store: FakeStore, make_writer: WriterFactory, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    records = new_records(1000)
    line = len(encode(records[0]))
    limit = 300 * line
    fake_store.down = True
    writer = make_writer(
        fake_store, batch_size=10, max_buffer=100, spill_dir=spill, spill_max_bytes=limit
    )
    writer.start()
    for start in range(0, 1000, 7):
        writer.submit(records[start : start + 7])
    wait_until(lambda: writer.backlog - writer.spilled <= 100 + 10)
    on_disk = sum(path.stat().st_size for path in spill_segments(spill))
    # Filled up to the limit (the rows that fit, not all or nothing per spill), never past it.
    assert limit - 2 * line < writer.spilled_bytes == on_disk <= limit
    assert writer.dropped_total > 0 and writer.backlog + writer.dropped_total == 1000
    fake_store.down = False
    assert writer.flush(10)
    written = fake_store.ids
    assert len(written) == writer.written_total == 1000 - writer.dropped_total
    order = [ids(records).index(i) for i in written]
    assert order == sorted(order)  # what was kept is written in order
    assert spill_segments(spill) == [] and writer.spilled_bytes == 0


def test_stop_keeps_the_oldest_rows_that_fit_under_the_spill_limit(
    make_writer: WriterFactory, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    records = new_records(300)
    limit = 200 * len(encode(records[0]))
    first = stopped_in_an_outage(make_writer, records, spill_dir=spill, spill_max_bytes=limit)
    on_disk = spilled_ids(spill)
    assert sum(p.stat().st_size for p in spill_segments(spill)) <= limit
    assert len(on_disk) > 190 and on_disk == ids(records)[: len(on_disk)]
    assert first.dropped_total == 300 - len(on_disk)

    # The next start counts what is on disk against the same limit.
    queue = SpillQueue(spill, max_bytes=limit)
    assert queue.open() == len(on_disk)
    assert queue.bytes == sum(p.stat().st_size for p in spill_segments(spill))
    assert queue.append(new_records(20)) == (limit - queue.bytes) // len(encode(records[0]))
    oldest = queue.oldest()
    assert oldest is not None
    queue.remove(oldest)
    assert queue.bytes == sum(p.stat().st_size for p in spill_segments(spill))
    queue.close()


def test_rows_submitted_after_stop_are_counted_as_dropped(
    fake_store: FakeStore, make_writer: WriterFactory
) -> None:
    writer = make_writer(fake_store)
    writer.start()
    records = new_records(123)
    writer.submit(records)
    writer.stop(timeout=5)
    assert fake_store.ids == ids(records)
    writer.submit(new_records(2))
    assert writer.dropped_total == 2 and fake_store.ids == ids(records)


def test_a_spill_dir_has_one_writer(
    fake_store: FakeStore, make_writer: WriterFactory, tmp_path: Path
) -> None:
    make_writer(fake_store, spill_dir=tmp_path).start()
    with pytest.raises(RuntimeError, match="another writer"):
        make_writer(fake_store, spill_dir=tmp_path).start()


def test_a_refused_row_is_set_aside_and_the_rest_written(
    fake_store: FakeStore, make_writer: WriterFactory, tmp_path: Path
) -> None:
    records = new_records(50)
    bad = records[17]
    fake_store.refuse.add(bad.id)
    writer = make_writer(fake_store, batch_size=50, spill_dir=tmp_path)
    writer.start()
    writer.submit(records)
    assert writer.flush(5)
    assert fake_store.ids == [r.id for r in records if r is not bad]
    assert writer.rejected_total == 1
    rejected = [json.loads(line) for line in (tmp_path / REJECTED).read_text().splitlines()]
    assert [entry["record"]["id"] for entry in rejected] == [bad.id]
    assert "refused by the test" in rejected[0]["error"]


def test_a_record_the_real_store_cannot_take_is_set_aside(
    sqlite_url: str, make_writer: WriterFactory
) -> None:
    with RecordStore(sqlite_url) as store:
        store.migrate()
        writer = make_writer(store, batch_size=20)
        writer.start()
        good = new_records(30)
        writer.submit([*good[:10], new_record(latency_ms=float("nan")), *good[10:]])
        assert writer.flush(5)
        assert store.count() == 30 and writer.rejected_total == 1


def test_without_spill_dir_a_full_buffer_drops_the_oldest(
    fake_store: FakeStore, make_writer: WriterFactory
) -> None:
    writer = make_writer(fake_store, max_buffer=100)
    records = new_records(150)
    writer.submit(records)  # before start: nothing can leave memory yet
    assert writer.dropped_total == 50
    writer.start()
    assert writer.flush(5)
    assert fake_store.ids == ids(records[50:])


def test_a_torn_spill_line_is_set_aside_and_the_rest_replayed(
    fake_store: FakeStore, make_writer: WriterFactory, tmp_path: Path
) -> None:
    records = new_records(3)
    torn = encode(new_record())[:40]
    segment = tmp_path / f"{FIRST_SEQ:020d}{SUFFIX}"
    segment.write_text("".join(encode(r) for r in records) + "not json\n" + torn)
    writer = make_writer(fake_store, spill_dir=tmp_path)
    writer.start()
    assert writer.flush(5)
    assert fake_store.ids == ids(records)
    assert writer.rejected_total == 2 and not segment.exists()
    assert len((tmp_path / REJECTED).read_text().splitlines()) == 2


def test_flush_before_start_does_not_hang(
    fake_store: FakeStore, make_writer: WriterFactory
) -> None:
    writer = make_writer(fake_store)
    assert writer.flush(0.1)  # nothing submitted
    writer.submit(new_records(1))
    assert not writer.flush(0.1)


def test_concurrent_submitters_lose_nothing_on_a_real_database(
    database_url: str, make_writer: WriterFactory
) -> None:
    threads, per_thread = 16, 1000
    with RecordStore(database_url) as store:
        store.migrate()
        writer = make_writer(store, batch_size=500)
        writer.start()
        start = threading.Barrier(threads)

        def serve() -> None:
            start.wait()
            records = new_records(per_thread)
            for i in range(0, per_thread, 3):  # requests of 1 to 3 instances
                writer.submit(records[i : i + 1 + i % 3])
                writer.submit(records[i + 1 + i % 3 : i + 3])

        workers = [threading.Thread(target=serve) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert writer.flush(60)
        assert store.count() == threads * per_thread
        assert writer.written_total == threads * per_thread
        assert writer.failed_batches_total == 0 and writer.backlog == 0


def test_the_buffer_and_the_counters_are_measured_in_predictions(
    fake_store: FakeStore, make_writer: WriterFactory
) -> None:
    """A record is a request: a 4-instance request takes the room of 4 predictions."""
    writer = make_writer(fake_store, max_buffer=10, batch_size=6)
    requests = [new_record(4) for _ in range(3)]
    writer.submit(requests)  # 12 predictions: the oldest request does not fit
    assert writer.dropped_total == 4 and writer.backlog == 8
    failed = failed_record()
    writer.submit([failed])  # a failed request counts one
    writer.start()
    assert writer.flush(5)
    assert fake_store.ids == ids([*requests[1:], failed])
    assert writer.written_total == 9 and writer.backlog == 0
    assert fake_store.batch_sizes == [2, 1]  # 8 predictions, then 1: batches of ~6


def test_a_batch_ends_at_batch_rows_records_or_batch_size_predictions(
    fake_store: FakeStore, make_writer: WriterFactory, tmp_path: Path
) -> None:
    """One-prediction requests: batch_rows bounds a batch; 300-prediction ones: batch_size."""
    writer = make_writer(fake_store, batch_size=500, batch_rows=3)
    singles, bigs = new_records(9), [new_record(300) for _ in range(4)]
    writer.submit(singles)
    writer.submit(bigs)
    writer.start()
    assert writer.flush(5)
    assert fake_store.ids == ids([*singles, *bigs])
    assert fake_store.batch_sizes == [3, 3, 3, 2, 2]
    # Rows replayed from the spill files are committed in the same batches.
    spill = tmp_path / "spill"
    fake_store.down = True
    spilling = make_writer(fake_store, batch_size=500, batch_rows=3, spill_dir=spill)
    spilling.start()
    later = new_records(7)
    spilling.submit(later)
    spilling.stop(timeout=0.5)  # the database is down: the rows go to disk
    assert spill_segments(spill)
    fake_store.down, fake_store.batch_sizes[:] = False, []
    replaying = make_writer(fake_store, batch_size=500, batch_rows=3, spill_dir=spill)
    replaying.start()
    assert replaying.flush(5)
    assert fake_store.ids[-7:] == ids(later)
    assert fake_store.batch_sizes == [3, 3, 1]


def test_spilled_requests_count_their_predictions_across_a_restart(
    fake_store: FakeStore, make_writer: WriterFactory, tmp_path: Path
) -> None:
    fake_store.down = True
    writer = make_writer(fake_store, max_buffer=20, spill_dir=tmp_path)
    writer.start()
    requests = [new_record(5) for _ in range(8)]
    writer.submit(requests)
    wait_until(lambda: writer.spilled > 0)
    writer.stop(timeout=0.5)
    assert writer.dropped_total == 0 and writer.spilled_total > 0
    fake_store.down = False
    again = make_writer(fake_store, spill_dir=tmp_path)
    again.start()  # replays the spill files: 40 predictions in 8 records
    assert again.flush(5)
    assert fake_store.ids == ids(requests) and again.written_total == 40


def test_spill_files_from_before_the_request_log_are_replayed(
    make_writer: WriterFactory, tmp_path: Path
) -> None:
    """A line of the old format (one prediction) becomes a one-instance request, and the
    prediction id the client got for it still takes feedback, reaching its shadow."""
    served_id, shadow_id = str(uuid.uuid4()), str(uuid.uuid4())
    old = {
        "id": served_id,
        "request_id": "r",
        "created_at": "2026-12-01T10:00:00+00:00",
        "model_name": "california-housing",
        "model_version": "1",
        "protocol": "v1",
        "inputs": {"MedInc": 8.3, "HouseAge": 41.0},
        "output": 4.5,
        "latency_ms": 2.0,
        "status": 200,
        "error": None,
    }  # no shadow_of: the oldest spill files lack it
    shadow = old | {"id": shadow_id, "model_version": "2", "output": 4.0, "shadow_of": served_id}
    spill = tmp_path / "spill"
    spill.mkdir()
    lines = "".join(json.dumps(line) + "\n" for line in (old, shadow))
    (spill / f"{FIRST_SEQ:020d}{SUFFIX}").write_text(lines)
    with RecordStore(f"sqlite:///{tmp_path / 'records.db'}") as store:
        store.migrate()
        writer = make_writer(store, spill_dir=spill)
        writer.start()
        assert writer.flush(5) and writer.rejected_total == 0
        store.add_feedback(served_id, 4.25)
        assert store.labelled("1", 10) == [(4.5, 4.25)]
        assert store.labelled("2", 10) == [(4.0, 4.25)]
        [entry] = [e for e in store.recent(10) if e["model_version"] == "1"]
        assert entry["inputs"] == {"MedInc": 8.3, "HouseAge": 41.0} and entry["actual"] == 4.25
        writer.stop()
