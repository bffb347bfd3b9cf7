"""Spill files: rows the database could not take yet, kept on local disk until it can.

A line is one request record (record_to_json); a line from before the request log, one
prediction, is read back as a one-instance request (record_from_json).

The folder holds append-only JSON-lines segments named by a sequence number. Every append is
fsync'd before it returns; segments are replayed oldest first and deleted once committed. A
replay after a crash may repeat rows that were already committed: the store's insert is
idempotent on id, so that never duplicates them. A torn last line (crash mid-write) is set
aside, not replayed. With `max_bytes` (0: no limit), the segments never grow past that many
bytes: the rows that do not fit are not written, and the caller counts them as lost (a full
volume would fail worse: Kubernetes evicts a pod whose emptyDir outgrows its sizeLimit, with
every spilled row). Not thread-safe: RecordWriter serializes every call.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from housing.servingdb.models import (
    RequestRecord,
    compact_json,
    record_from_json,
    record_to_json,
    record_weight,
)

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
REJECTED = "rejected.jsonl"  # rows the database refused: kept for a human, never replayed
LOCK = ".lock"
# Sequence numbers start high so that a segment can be put before the oldest one.
FIRST_SEQ = 10**12


@dataclass
class Segment:
    seq: int
    path: Path
    rows: int  # predictions in its complete lines (record_weight; a line that is no record: 1)
    size: int  # bytes


def encode(record: RequestRecord) -> str:
    # ASCII only (json.dumps escapes the rest): its length is its size in bytes.
    return compact_json(record_to_json(record)) + "\n"


class SpillQueue:
    """An ordered queue of segments in one folder, owned by one process at a time."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        segment_rows: int = 10_000,
        max_bytes: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.segment_rows = max(1, segment_rows)
        self.max_bytes = max_bytes
        self.rows = 0  # predictions in all segments
        self.bytes = 0  # size of all segments
        self._segments: deque[Segment] = deque()
        self._active: Segment | None = None  # the newest segment, still open for appends
        self._lock_fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._lock_fd is not None

    def open(self) -> int:
        """Lock the folder and take up the segments an earlier run left; returns their rows."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # Two writers sharing a folder would replay and delete each other's segments.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"spill folder {self.directory} is used by another writer") from None
        self._lock_fd = fd
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            if not path.stem.isdigit():
                continue
            data = path.read_bytes()
            rows = _weight_of_lines(data)
            if rows == 0:
                path.unlink(missing_ok=True)
                continue
            self._segments.append(Segment(int(path.stem), path, rows, len(data)))
            self.rows += rows
            self.bytes += len(data)
        return self.rows

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def append(self, records: Sequence[RequestRecord]) -> int:
        """Add `records` after everything already spilled; durable when this returns. Returns
        the predictions kept: those of the first records, as many as `max_bytes` leaves room
        for."""
        lines = self._fitting([encode(record) for record in records])
        weights = [record_weight(record) for record in records[: len(lines)]]
        kept = sum(weights)
        while lines:
            segment = self._active
            if segment is None or segment.rows >= self.segment_rows:
                seq = self._segments[-1].seq + 1 if self._segments else FIRST_SEQ
                segment = self._active = self._create(seq, at_end=True)
            # As many records as the segment has room for predictions, one at least.
            room, count, weight = self.segment_rows - segment.rows, 1, weights[0]
            while count < len(lines) and weight + weights[count] <= room:
                weight += weights[count]
                count += 1
            self._write(segment, lines[:count], weight)
            lines, weights = lines[count:], weights[count:]
        return kept

    def prepend(self, records: Sequence[RequestRecord]) -> int:
        """Put `records` before everything spilled: a batch older than all of it. Returns the
        predictions kept, as append() does."""
        lines = self._fitting([encode(record) for record in records])
        kept = sum(record_weight(record) for record in records[: len(lines)])
        if lines:
            seq = self._segments[0].seq - 1 if self._segments else FIRST_SEQ
            self._write(self._create(seq, at_end=False), lines, kept)
        return kept

    def oldest(self) -> Segment | None:
        """The oldest segment, sealed: appends go to a new segment from now on."""
        if not self._segments:
            return None
        segment = self._segments[0]
        if segment is self._active:
            self._active = None
        return segment

    def read(self, segment: Segment) -> tuple[list[RequestRecord], list[str]]:
        """The records of `segment` in order, and the complete lines that are not records."""
        records: list[RequestRecord] = []
        bad: list[str] = []
        # The piece after the last newline is empty, or a line torn by a crash: never a record.
        *complete, torn = segment.path.read_bytes().split(b"\n")
        if torn:
            bad.append(torn.decode("utf-8", "replace"))
        for line in complete:
            try:
                records.append(record_from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                bad.append(line.decode("utf-8", "replace"))
        return records, bad

    def remove(self, segment: Segment) -> None:
        """Forget `segment` once its rows are committed."""
        try:
            segment.path.unlink(missing_ok=True)
        except OSError as error:  # replayed again at the next start: harmless, idempotent
            log.warning("could not delete spill segment %s: %s", segment.path, error)
        self._segments.remove(segment)
        self.rows -= segment.rows
        self.bytes -= segment.size

    def reject(self, lines: Iterable[str]) -> None:
        """Append JSON lines to the rejected file (rows the database refused)."""
        data = "".join(line.rstrip("\n") + "\n" for line in lines).encode()
        with (self.directory / REJECTED).open("ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())

    def _fitting(self, lines: list[str]) -> list[str]:
        """The longest head of `lines` that keeps the segments within max_bytes."""
        if not self.max_bytes:
            return lines
        room = self.max_bytes - self.bytes
        for count, line in enumerate(lines):
            room -= len(line)
            if room < 0:
                return lines[:count]
        return lines

    def _create(self, seq: int, *, at_end: bool) -> Segment:
        segment = Segment(seq, self.directory / f"{seq:020d}{SUFFIX}", 0, 0)
        segment.path.touch(exist_ok=False)
        _fsync_dir(self.directory)  # the new name survives a power cut too
        if at_end:
            self._segments.append(segment)
        else:
            self._segments.appendleft(segment)
        return segment

    def _write(self, segment: Segment, lines: list[str], weight: int) -> None:
        data = "".join(lines).encode()
        with segment.path.open("ab") as file:
            start = file.seek(0, os.SEEK_END)
            try:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            except OSError:
                # Leave no torn line for the next append to glue onto; seal the segment.
                file.truncate(start)
                if segment is self._active:
                    self._active = None
                raise
        segment.rows += weight
        segment.size += len(data)
        self.rows += weight
        self.bytes += len(data)


def _weight_of_lines(data: bytes) -> int:
    """The predictions in the complete lines of a segment an earlier run left."""
    *complete, _torn = data.split(b"\n")
    total = 0
    for line in complete:
        try:
            total += record_weight(record_from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            total += 1  # read() sets it aside as one rejected line
    return total


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
