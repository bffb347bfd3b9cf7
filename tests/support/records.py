"""Helpers of the records tests (the fixtures in conftest.py wrap them), also used by the
server's fault tests: records, a fake store, throwaway PostgreSQL databases, a TCP proxy that
plays a network outage, SQLite's write lock held by another connection, the spill files."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from housing.contract import FEATURES
from housing.servingdb import RequestRecord, StoreUnavailableError
from model_server.records.spill import REJECTED, SUFFIX
from model_server.records.writer import RecordWriter
from tests.support.servers import free_port

WriterFactory = Callable[..., RecordWriter]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def new_record(instances: int = 1, **overrides: Any) -> RequestRecord:
    """A served request of `instances` instances (the same inputs, output 2.5 each)."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "request_id": uuid.uuid4().hex,
        "created_at": datetime.now(UTC),
        "model_name": "california-housing",
        "model_version": "1",
        "protocol": "v1",
        "features": list(FEATURES),
        "inputs": [[float(i) + 0.5 for i in range(len(FEATURES))]] * instances,
        "outputs": [2.5] * instances,
        "latency_ms": 3.0,
        "status": 200,
        "error": None,
    }
    fields.update(overrides)
    return RequestRecord(**fields)


def failed_record(**overrides: Any) -> RequestRecord:
    """A refused request: no instances."""
    fields = {"features": None, "inputs": None, "outputs": None, "status": 400, "error": "bad"}
    return new_record(**(fields | overrides))


def first_id(record: RequestRecord) -> str:
    """The prediction id of the first instance of `record`."""
    return f"{record.id}.0"


def new_records(n: int, start: datetime | None = None, **overrides: Any) -> list[RequestRecord]:
    """`n` one-instance requests one millisecond apart, oldest first."""
    start = start or datetime.now(UTC)
    return [new_record(created_at=start + timedelta(milliseconds=i), **overrides) for i in range(n)]


class FakeStore:
    """A store in memory whose outages and refusals the test controls."""

    def __init__(self) -> None:
        self.committed: list[RequestRecord] = []
        self.batch_sizes: list[int] = []
        self.down = False
        self.refuse: set[str] = set()  # ids that make a batch fail as bad data
        self.gate = threading.Event()  # cleared: write_batch blocks until set
        self.gate.set()
        self._lock = threading.Lock()

    def write_batch(self, records: Sequence[RequestRecord]) -> None:
        self.gate.wait()
        if self.down:
            raise StoreUnavailableError("prediction store unavailable: test outage")
        if any(record.id in self.refuse for record in records):
            raise ValueError("refused by the test")
        with self._lock:
            known = {record.id for record in self.committed}
            self.committed.extend(record for record in records if record.id not in known)
            self.batch_sizes.append(len(records))

    @property
    def ids(self) -> list[str]:
        with self._lock:
            return [record.id for record in self.committed]


def log_rows(database_url: str, where: str = "1=1") -> list[dict[str, Any]]:
    """The predictions, as /logs shows them (one dict per instance), of the request rows that
    `where` selects, newest first: for tests that look at what a server wrote."""
    from housing.servingdb.models import entries_of, prediction_feedback, request_log

    url = sa.make_url(database_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            statement = (
                sa.select(request_log)
                .where(sa.text(where))
                .order_by(request_log.c.created_at.desc())
            )
            rows = connection.execute(statement).mappings().all()
            feedback = {
                row.prediction_id: (row.actual, row.feedback_at)
                for row in connection.execute(sa.select(prediction_feedback))
            }
    finally:
        engine.dispose()
    return [entry for row in rows for entry in entries_of(row, feedback)]


def drop_schema(url: str) -> None:
    """Drop the records tables, so that the next store migrates from nothing."""
    from housing.servingdb.models import metadata

    tables = ", ".join([*metadata.tables, "records_alembic_version"])
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {tables}")
    engine.dispose()


@contextmanager
def holding_the_write_lock(database: str | Path) -> Iterator[None]:
    """Another connection (as another process would) holding SQLite's write lock."""
    blocker = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        yield
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()


def spill_segments(folder: Path) -> list[Path]:
    """The spill folder's segments, oldest first (not the rejected rows' file)."""
    return sorted(p for p in folder.glob(f"*{SUFFIX}") if p.name != REJECTED)


class TcpProxy:
    """127.0.0.1:port forwarded to PostgreSQL. stop() is an outage: open connections are cut
    and new ones refused; start() ends it, on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running = threading.Event()

    def route(self, url: str) -> str:
        """`url` (a database on the target) through this proxy."""
        routed = sa.make_url(url).set(host="127.0.0.1", port=self.port)
        return routed.render_as_string(hide_password=False)

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        self._running.set()
        self._spawn(self._accept, listener)

    def stop(self) -> None:
        self._running.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
            threads, self._threads = self._threads, []
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(5)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                # Forward each small protocol message at once (Nagle would hold it ~40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
