"""Fixtures of the records tests, small to large: a record factory, a fake store, real stores
on SQLite and on PostgreSQL (a fresh database per test, dropped afterwards), and a TCP proxy
that cuts PostgreSQL off the way a network outage would.

PostgreSQL is the machine's server on 127.0.0.1:5432 (RECORDS_TEST_PG_* to change it); the
tests marked `postgres` fail, never skip, when it is not there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from housing.servingdb import RecordStore
from model_server.records.writer import RecordWriter
from tests.support.records import FakeStore, TcpProxy, WriterFactory, drop_schema
from tests.support.servers import PG_HOST, PG_PORT, postgres_database


@pytest.fixture
def fake_store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'records.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def shared_postgres_url() -> Iterator[str]:
    """One database for the session; each test that uses it gets it emptied of our tables."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both databases the server supports, each time without our schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.db'}"
    url: str = request.getfixturevalue("shared_postgres_url")
    drop_schema(url)
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[RecordStore]:
    records = RecordStore(database_url)
    records.migrate()
    yield records
    records.close()


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy((PG_HOST, PG_PORT))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def make_writer() -> Iterator[WriterFactory]:
    """Writers with test-sized timings; all stopped at the end of the test."""
    made: list[RecordWriter] = []

    def make(store: Any, **options: Any) -> RecordWriter:
        options = {"flush_interval": 0.05, "backoff_initial": 0.01, "backoff_max": 0.05} | options
        writer = RecordWriter(store, **options)
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.stop(timeout=1.0)
