"""RecordWriter: takes request records off the request path and commits them in batches.

One record, and one database row, per request (its instances as arrays: see
housing.servingdb.models). The buffer, the batches and the counters are measured in
predictions (a request's instances, or one for a failed request: `record_weight`), as they
were when a row was a prediction: a memory bound that holds whatever the requests' sizes.
A batch also ends at `batch_rows` records: its work (the rows' parameters, built holding the
GIL, and their inserts) runs on the event loop's core, and a request that arrives meanwhile
waits, so the batch must stay short in rows even when the rows are single predictions.
Records flow memory -> (disk, when memory is over `max_buffer`) -> database, oldest first:
the batch being written is older than anything spilled, and anything spilled is older
than anything still in memory. A database outage only delays rows: the writer keeps the
batch and retries with backoff, a second thread spills the overflow to `spill_dir`, and at
stop() whatever could not be written is spilled too and replayed by the next start().
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from sqlalchemy import exc

from housing.servingdb.errors import StoreUnavailableError, connection_failed
from housing.servingdb.models import RequestRecord, record_to_json, record_weight
from model_server.priority import WRITER_NICE, lower_current_thread
from model_server.records.spill import Segment, SpillQueue

log = logging.getLogger(__name__)

# Failures of the database rather than of the rows: keep the batch and retry. Besides the
# connection failing (housing.servingdb.errors.connection_failed, as the stores judge it):
_TRANSIENT = (
    StoreUnavailableError,
    exc.InternalError,
    exc.ProgrammingError,  # e.g. the table is missing until someone migrates
)
_LOG_EVERY = 30.0  # seconds between repeated warnings about drops


class BatchSink(Protocol):
    def write_batch(self, records: Sequence[RequestRecord]) -> None: ...


def _is_transient(error: Exception) -> bool:
    return connection_failed(error) or isinstance(error, _TRANSIENT)


class RecordWriter:
    """Buffers records in memory and commits them from a background thread.

    Counters, exported by model_server.metrics: written_total (rows committed), spilled_total
    (rows ever spilled to disk), rejected_total (rows the database refused, set aside in
    spill_dir/rejected.jsonl or the log), dropped_total (rows lost: buffer full without
    spill_dir, spill files at spill_max_bytes, spill disk failing, or submitted after stop()).
    failed_batches_total (failed write attempts) is not exported: the tests and the log read it.
    """

    def __init__(
        self,
        store: BatchSink,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        max_buffer: int = 100_000,
        spill_dir: str | Path | None = None,
        *,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        segment_rows: int | None = None,
        spill_max_bytes: int = 0,
        batch_rows: int | None = None,
    ) -> None:
        batch_rows = batch_size if batch_rows is None else batch_rows
        if batch_size < 1 or batch_rows < 1 or max_buffer < 1 or flush_interval <= 0:
            raise ValueError(
                "batch_size, batch_rows and max_buffer must be >= 1, flush_interval > 0"
            )
        self.store = store
        self.batch_size = batch_size  # predictions
        self.batch_rows = batch_rows  # records
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._spill = (
            SpillQueue(spill_dir, segment_rows or 20 * batch_size, spill_max_bytes)
            if spill_dir is not None
            else None
        )

        self._buffer: deque[RequestRecord] = deque()
        self._buffered = 0  # predictions in _buffer
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # wakes the writer
        self._overflow = threading.Condition(self._lock)  # wakes the spiller
        self._progress = threading.Condition(self._lock)  # wakes flush()
        # Taken before _lock, never after: makes "disk before memory" atomic for the
        # writer's pick against the spiller's append.
        self._order = threading.Lock()
        self._abort = threading.Event()  # stop() gave up waiting for the database

        # Predictions, as every count here.
        self._accepted = 0  # taken in (submitted, or found on disk at start)
        self._resolved = 0  # committed, rejected or dropped
        self._flush_target = 0
        self._first_pending: float | None = None  # when the oldest memory row came
        self._current: list[RequestRecord] = []  # the batch being written, from memory
        self._current_weight = 0
        self._spilling = 0  # between memory and disk
        self._on_disk = 0  # in spill segments (kept under _lock, unlike the spill's own)
        self._stopping = False
        self._closed = False
        self._down_since: float | None = None
        self._last_drop_log = 0.0
        self._writer: threading.Thread | None = None
        self._spiller: threading.Thread | None = None

        self.written_total = 0
        self.failed_batches_total = 0
        self.spilled_total = 0
        self.rejected_total = 0
        self.dropped_total = 0

    def _full(self, predictions: int, records: int) -> bool:
        """Whether that much makes a batch: batch_size predictions, or batch_rows records."""
        return predictions >= self.batch_size or records >= self.batch_rows

    # -- the request path -------------------------------------------------------------

    def submit(self, records: Iterable[RequestRecord]) -> None:
        """Queue records for writing. Never raises, never waits for the database."""
        try:
            self._submit(records)
        except Exception:  # the request must not fail because its log could not be kept
            log.exception("could not queue request records")

    def _submit(self, records: Iterable[RequestRecord]) -> None:
        if isinstance(records, RequestRecord):
            records = [records]
        batch = [record for record in records if isinstance(record, RequestRecord)]
        if not batch:
            return
        weight = sum(map(record_weight, batch))
        dropped = 0
        with self._lock:
            if self._closed:
                dropped = weight
                self._accepted += dropped
                self._drop_locked(dropped)
            else:
                was_empty = not self._buffer
                if was_empty:
                    self._first_pending = time.monotonic()
                self._buffer.extend(batch)
                self._buffered += weight
                self._accepted += weight
                size = self._buffered
                # Wake the writer for a full batch, or to start the flush_interval clock.
                if was_empty or self._full(size, len(self._buffer)):
                    self._work.notify()
                if size > self.max_buffer:
                    if self._spill is not None:
                        self._overflow.notify()  # the spiller moves the oldest rows to disk
                    else:  # nowhere to put them: keep the newest rows
                        dropped = self._pop_oldest_locked(self.max_buffer)
                        self._drop_locked(dropped)
        if dropped:
            self._log_drop(dropped)

    def _pop_oldest_locked(self, keep: int) -> int:
        """Drop the oldest records from memory until it holds at most `keep` predictions (the
        newest record stays, whatever its size); the predictions dropped."""
        dropped = 0
        while self._buffered > keep and len(self._buffer) > 1:
            weight = record_weight(self._buffer.popleft())
            self._buffered -= weight
            dropped += weight
        return dropped

    @property
    def backlog(self) -> int:
        """Predictions taken in but not yet committed: in memory, in flight, or spilled."""
        with self._lock:
            return self._buffered + self._current_weight + self._spilling + self._on_disk

    @property
    def spilled(self) -> int:
        """Predictions on disk now, waiting for the database."""
        return self._on_disk

    @property
    def spilled_bytes(self) -> int:
        """Size of the spill files waiting for the database."""
        return self._spill.bytes if self._spill is not None else 0

    @property
    def spill_max_bytes(self) -> int:
        """The spill files' size limit (0: no spill folder, or no limit)."""
        return self._spill.max_bytes if self._spill is not None else 0

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (and the spiller); replays rows an earlier run spilled."""
        if self._writer is not None:
            raise RuntimeError("RecordWriter already started")
        if self._spill is not None:
            restored = self._spill.open()
            if restored:
                log.info("replaying %d spilled prediction rows", restored)
            with self._lock:
                self._accepted += restored
                self._on_disk = restored
            self._spiller = threading.Thread(
                target=self._run_spiller, name="records-spiller", daemon=True
            )
            self._spiller.start()
        self._writer = threading.Thread(target=self._run_writer, name="records-writer", daemon=True)
        self._writer.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row submitted so far is committed; False on timeout."""
        with self._lock:
            target = self._accepted
            if self._resolved >= target:
                return True
            if self._writer is None or not self._writer.is_alive():
                return False
            self._flush_target = max(self._flush_target, target)
            self._work.notify()
            return self._progress.wait_for(lambda: self._resolved >= target, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Flush, then stop the threads. Rows the database did not take within `timeout` are
        spilled to disk (replayed at the next start), or logged as lost without spill_dir."""
        deadline = time.monotonic() + timeout
        writer = self._writer
        if writer is not None and writer.is_alive():
            drained = self.flush(timeout)
            with self._lock:
                self._stopping = True
                self._work.notify_all()
                self._overflow.notify_all()
            if not drained:
                self._abort.set()
            writer.join(max(0.0, deadline - time.monotonic()))
            if writer.is_alive():
                self._abort.set()
                writer.join(2.0)
            if writer.is_alive():
                # Stuck in a database call: keep a copy of its batch (a double is harmless,
                # the insert is idempotent).
                log.warning("records writer did not stop; saving its batch")
                self._save(list(self._current), prepend=True, in_flight=True)
        if self._spiller is not None:
            with self._lock:
                self._stopping = True
                self._overflow.notify_all()
            self._spiller.join(5.0)
        with self._lock:
            self._closed = True
            leftovers = list(self._buffer)
            self._buffer.clear()
            self._buffered = 0
        self._save(leftovers, prepend=False)
        if self._spill is not None:
            self._spill.close()

    # -- the writer thread ------------------------------------------------------------

    def _run_writer(self) -> None:
        lower_current_thread(WRITER_NICE)  # the event loop first; the writer keeps up
        while True:
            try:
                work = self._next_work()
            except Exception:  # e.g. a spill file that cannot be read: try again later
                log.exception("records writer could not pick its next batch")
                if self._abort.wait(self.backoff_max):
                    return
                continue
            if work is None:
                return
            records, segment = work
            if not self._commit(records):  # aborted by stop()
                if segment is None:
                    self._save(records, prepend=True, in_flight=True)
                return
            self._finish(records, segment)

    def _next_work(self) -> tuple[list[RequestRecord], Segment | None] | None:
        with self._lock:
            while True:
                if self._abort.is_set():
                    return None
                if self._spill is not None and self._spill.rows > 0:
                    break  # disk first: it holds older rows than memory
                size = self._buffered
                if not self._buffer:
                    if self._stopping:
                        return None
                    self._work.wait()
                    continue
                if self._full(size, len(self._buffer)):
                    break
                if self._stopping:  # whatever is left, now
                    break
                if self._flush_target > self._resolved:
                    break
                wait = (self._first_pending or 0.0) + self.flush_interval - time.monotonic()
                if wait <= 0:
                    break
                self._work.wait(wait)
        with self._order:
            if self._spill is not None:
                segment = self._spill.oldest()
                if segment is not None:
                    records, bad = self._spill.read(segment)
                    if bad:
                        self._reject_lines(bad)
                    return records, segment
            with self._lock:
                batch: list[RequestRecord] = []
                weight = 0
                while self._buffer and not (batch and self._full(weight, len(batch))):
                    record = self._buffer.popleft()
                    batch.append(record)
                    weight += record_weight(record)
                self._buffered -= weight
                self._current, self._current_weight = batch, weight
                self._first_pending = time.monotonic() if self._buffer else None
                return batch, None

    def _commit(self, records: list[RequestRecord]) -> bool:
        """Write `records` (a spill segment is bigger than a batch) a batch at a time."""
        batch: list[RequestRecord] = []
        weight = 0
        for record in records:
            batch.append(record)
            weight += record_weight(record)
            if self._full(weight, len(batch)):
                if not self._commit_batch(batch):
                    return False
                batch, weight = [], 0
        return not batch or self._commit_batch(batch)

    def _commit_batch(self, batch: list[RequestRecord]) -> bool:
        """Write `batch`, retrying while the database is down; False if stop() gave up."""
        delay = self.backoff_initial
        while True:
            try:
                self.store.write_batch(batch)
            except Exception as error:
                if not _is_transient(error):
                    return self._isolate(batch, error)
                self.failed_batches_total += 1
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning(
                        "prediction store unavailable; keeping %d rows and retrying: %s",
                        self.backlog,
                        error,
                    )
                # Jitter keeps replicas from retrying in lockstep.
                if self._abort.wait(delay * random.uniform(0.5, 1.0)):
                    return False
                delay = min(delay * 2, self.backoff_max)
                continue
            if self._down_since is not None:
                log.info("prediction store back after %.1fs", time.monotonic() - self._down_since)
                self._down_since = None
            self.written_total += sum(map(record_weight, batch))
            return True

    def _isolate(self, batch: list[RequestRecord], error: Exception) -> bool:
        """A row the database refuses must not hold back the others: halve until alone."""
        if len(batch) == 1:
            self._reject(batch[0], error)
            return True
        middle = len(batch) // 2
        return self._commit_batch(batch[:middle]) and self._commit_batch(batch[middle:])

    def _finish(self, records: list[RequestRecord], segment: Segment | None) -> None:
        if segment is not None:
            with self._order:
                assert self._spill is not None
                self._spill.remove(segment)
        with self._lock:
            if segment is not None:
                self._on_disk -= segment.rows
                self._resolved += segment.rows
            else:
                self._resolved += sum(map(record_weight, records))
                self._current, self._current_weight = [], 0
            self._progress.notify_all()

    # -- the spiller thread -----------------------------------------------------------

    def _run_spiller(self) -> None:
        while True:
            with self._lock:
                while self._buffered <= self.max_buffer and not self._stopping:
                    self._overflow.wait()
                if self._stopping:
                    return
            try:
                self._spill_overflow()
            except Exception:
                log.exception("records spiller failed")

    def _spill_overflow(self) -> None:
        assert self._spill is not None
        with self._order:
            with self._lock:
                # Spill down to half: one fsync'd append per max_buffer/2 rows, not per row.
                if self._buffered <= self.max_buffer // 2:
                    return
                chunk: list[RequestRecord] = []
                excess = 0
                while self._buffer and self._buffered - excess > self.max_buffer // 2:
                    record = self._buffer.popleft()
                    chunk.append(record)
                    excess += record_weight(record)
                self._buffered -= excess
                self._spilling = excess
            try:
                kept = self._spill.append(chunk)
            except OSError as error:
                log.error("could not spill %d prediction rows, dropped: %s", excess, error)
                with self._lock:
                    self._spilling = 0
                    self._drop_locked(excess)
                return
            with self._lock:
                self._spilling = 0
                self._on_disk += kept
                self._drop_locked(excess - kept)
                self._work.notify()
            self.spilled_total += kept
            log.info("spilled %d prediction rows to %s", kept, self._spill.directory)
            if kept < excess:
                self._log_full(excess - kept)

    # -- rows that cannot be written --------------------------------------------------

    def _save(
        self, records: list[RequestRecord], *, prepend: bool, in_flight: bool = False
    ) -> None:
        """Keep rows for the next start (at shutdown); lost, and said so, without a disk.
        `in_flight`: the records are the writer's current batch."""
        if not records:
            return
        weight = sum(map(record_weight, records))
        if self._spill is not None:
            try:
                with self._order:
                    restored = 0 if self._spill.is_open else self._spill.open()
                    kept = self._spill.prepend(records) if prepend else self._spill.append(records)
                with self._lock:
                    self._on_disk += restored + kept
                    if in_flight:
                        self._current, self._current_weight = [], 0
                    self._drop_locked(weight - kept)
                log.warning("spilled %d unwritten prediction rows for the next start", kept)
                if kept < weight:
                    self._log_full(weight - kept)
                return
            except (OSError, RuntimeError) as error:
                log.error("could not spill unwritten prediction rows: %s", error)
        with self._lock:
            if in_flight:
                self._current, self._current_weight = [], 0
            self._drop_locked(weight)
        log.error("%d prediction rows were never written to the store", weight)

    def _reject(self, record: RequestRecord, error: Exception) -> None:
        log.error("request record %r refused by the store, set aside: %s", record.id, error)
        self._reject_lines(
            [json.dumps({"error": str(error)[:2000], "record": record_to_json(record)})],
            record_weight(record),
        )

    def _reject_lines(self, lines: list[str], weight: int | None = None) -> None:
        """Set `lines` aside; they stand for `weight` predictions (one a line by default)."""
        self.rejected_total += len(lines) if weight is None else weight
        if self._spill is not None:
            try:
                self._spill.reject(lines)
                return
            except OSError as error:
                log.error("could not keep rejected rows: %s", error)
        for line in lines:
            log.error("rejected prediction row: %s", line)

    def _drop_locked(self, count: int) -> None:
        self.dropped_total += count
        self._resolved += count
        self._progress.notify_all()

    def _log_full(self, count: int) -> None:
        assert self._spill is not None
        log.error(
            "spill files at their limit (%d of %s bytes): dropped %d prediction rows "
            "(%d dropped in all)",
            self._spill.bytes,
            self._spill.max_bytes,
            count,
            self.dropped_total,
        )

    def _log_drop(self, count: int) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= _LOG_EVERY:
            self._last_drop_log = now
            log.warning(
                "prediction buffer full (%d rows) and no spill_dir: dropped the oldest %d rows "
                "(%d dropped in all)",
                self.max_buffer,
                count,
                self.dropped_total,
            )
