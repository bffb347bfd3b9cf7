"""Faults at the server level, each against a real `python -m model_server` under load, on real
databases: kill -9 (committed rows intact, the restart serves), SIGTERM (in-flight requests
answered, the log flushed, exit within the grace period), and a 10 s database outage
(PostgreSQL cut off behind a TCP proxy, SQLite held locked by another connection) with a small
memory buffer, so that the overflow goes through the spill files; and spill files at their
size limit, where the rows that do not fit are dropped and counted.

The prediction log is checked against the clients' own view: every prediction id a client got
in a 200 answer, and nothing else, is a row (tests/model_server/records covers the writer alone;
test_server_lifecycle.py covers MLflow going away).
"""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from model_server.server import FLUSH_SECONDS, GRACE_SECONDS
from tests.support.records import TcpProxy, holding_the_write_lock, log_rows, spill_segments
from tests.support.server import (
    FEATURES,
    MODEL,
    REPO,
    ROWS,
    ClientThreads,
    ServerProcess,
    sample,
    start_server,
    wait_for,
)
from tests.support.servers import PG_HOST, PG_PORT, postgres_database

pytestmark = pytest.mark.slow

V1 = f"/v1/models/{MODEL}:predict"
LOG = "model_server_prediction_log"
OUTAGE_SECONDS = 10.0
# Small enough that an outage overflows it within a second of traffic: the spill path runs.
SMALL_BUFFER = 300


# -- the clients --------------------------------------------------------------------------


@dataclass
class Outcome:
    sent: float | None  # when the request's last byte was written (None: it never was)
    done: float
    status: int | str  # the HTTP status, or the name of the exception
    ids: list[str] = field(default_factory=list)  # prediction ids of a 200 answer
    rows: int = 0


class Traffic(ClientThreads):
    """Client threads posting v1 requests until stopped, each with `rows[k % len(rows)]`
    instances; every outcome is kept, with the time the request was completely sent."""

    def __init__(self, server: ServerProcess, threads: int, rows: Sequence[int] = (1,)) -> None:
        super().__init__(threads)
        self.server = server
        self.rows = rows
        self.outcomes: list[Outcome] = []
        self._waiting: dict[int, float] = {}  # thread -> when its unanswered request was sent

    def _run(self, index: int) -> None:
        bodies = [{"instances": [list(ROWS[(index + i) % 2]) for i in range(n)]} for n in self.rows]
        k = index
        with self.server.client(timeout=60) as client:
            while not self._stop.is_set():
                k += 1
                body = bodies[k % len(bodies)]
                sent: list[float] = []

                def trace(event: str, _info: Any, sent: list[float] = sent) -> None:
                    if event == "http11.send_request_body.complete":
                        sent.append(time.monotonic())
                        with self._lock:
                            self._waiting[index] = sent[0]

                outcome = Outcome(None, 0.0, "", rows=len(body["instances"]))
                try:
                    response = client.post(V1, json=body, extensions={"trace": trace})
                    outcome.done = time.monotonic()
                    outcome.status = response.status_code
                    if response.status_code == 200:
                        outcome.ids = response.json()["prediction_ids"]
                except httpx.HTTPError as error:
                    outcome.done = time.monotonic()
                    outcome.status = type(error).__name__
                    time.sleep(0.01)  # a server that is gone refuses at once: do not spin
                outcome.sent = sent[0] if sent else None
                with self._lock:
                    self._waiting.pop(index, None)
                    self.outcomes.append(outcome)

    def waiting_since(self) -> list[float]:
        """When each request sent but not answered yet was sent."""
        with self._lock:
            return list(self._waiting.values())

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def answered(self) -> list[str]:
        """Every prediction id received in a 200 answer."""
        return [i for o in self.snapshot() if o.status == 200 for i in o.ids]

    def answered_after(self, moment: float) -> int:
        """Instances answered 200 by requests sent after `moment`."""
        return sum(
            o.rows
            for o in self.snapshot()
            if o.status == 200 and o.sent is not None and o.sent > moment
        )

    def failures(self) -> list[Outcome]:
        return [o for o in self.snapshot() if o.status != 200]


# -- the server's view --------------------------------------------------------------------


def log_counters(server: ServerProcess) -> dict[str, float]:
    text = server.get("/metrics", timeout=10).text
    kinds = ("written", "spilled", "rejected", "dropped")
    names = ("backlog", "spilled_backlog", *(f"{kind}_rows_total" for kind in kinds))
    found = {name: sample(text, f"{LOG}_{name}") for name in names}
    assert None not in found.values(), found
    return {k: float(v) for k, v in found.items() if v is not None}


def check_row(row: dict[str, Any]) -> None:
    """A served prediction's row, whole: what the server built, read back intact."""
    # "<the request row's UUID>.<instance>"
    request, _, index = row["id"].rpartition(".")
    assert str(uuid.UUID(request)) == request and index.isdigit(), row
    assert row["request_id"] and row["model_name"] == MODEL and row["model_version"], row
    assert row["protocol"] == "v1" and row["status"] == 200 and row["error"] is None, row
    inputs = row["inputs"] if isinstance(row["inputs"], dict) else json.loads(row["inputs"])
    assert tuple(inputs) == FEATURES and tuple(inputs.values()) in ROWS, row
    assert math.isfinite(row["output"]) and 0 < row["output"] < 20, row
    assert math.isfinite(row["latency_ms"]) and row["latency_ms"] >= 0, row
    assert row["created_at"], row


def postgres_rows(url: str) -> list[dict[str, Any]]:
    return log_rows(url)


def assert_one_row_per_answer(rows: list[dict[str, Any]], answered: list[str]) -> None:
    """Every instance answered 200 is exactly one row, and there is no other row."""
    assert len(answered) == len(set(answered)) > 0
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    missing, extra = set(answered) - set(ids), set(ids) - set(answered)
    assert not missing and not extra, (len(missing), len(extra))
    assert len(rows) == len(answered)
    for row in rows:
        check_row(row)


# -- kill -9, then SIGTERM ----------------------------------------------------------------


def test_kill_9_keeps_committed_rows_and_the_restart_serves_and_stops_gracefully(
    trained_registry: Any, tmp_path: Path
) -> None:
    """Under load: kill -9, the restart on the same database and spill folder, SIGTERM."""
    uri = trained_registry.tracking_uri
    server = start_server(tmp_path, uri)
    traffic = Traffic(server, threads=4, rows=(1, 1, 5))
    try:
        server.wait_ready()
        with traffic:
            wait_for(lambda: server.metric(f"{LOG}_written_rows_total") >= 500, 90, "commits")
            # The load stays on until the very end: the kill lands between and in commits.
            committed = server.metric(f"{LOG}_written_rows_total")
            server.process.kill()
            assert server.process.wait(10) == -signal.SIGKILL
    finally:
        server.stop()
    (server.workdir / "server.log").rename(server.workdir / "killed.log")

    with sqlite3.connect(server.database) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    rows = [dict(r) for r in server.rows()]
    assert len(rows) >= committed > 0
    for row in rows:
        check_row(row)
    ids = {row["id"] for row in rows}
    answered = set(traffic.answered())
    # A row may be committed before its answer left the server: only the requests the kill
    # cut off (sent, never answered) can have rows no client saw.
    cut = sum(o.rows for o in traffic.failures() if o.sent is not None)
    assert len(ids - answered) <= cut, (len(ids - answered), cut)
    lost = len(answered - ids)  # answered, but still in the writer's memory at the kill

    restarted = start_server(tmp_path, uri)  # same database, same spill folder
    singles = Traffic(restarted, threads=3, rows=(1, 2))
    batches = Traffic(restarted, threads=1, rows=(1000,))  # tens of ms or more each
    try:
        restarted.wait_ready()
        with singles, batches:
            wait_for(
                lambda: len(batches.answered()) >= 2000 and len(singles.answered()) >= 200,
                60,
                "traffic after the restart",
            )
            # The signal lands while a batch, sent a moment ago, is being computed.
            wait_for(
                lambda: any(time.monotonic() - t < 0.01 for t in batches.waiting_since()),
                30,
                "a batch just sent",
                interval=0.001,
            )
            signalled = time.monotonic()
            restarted.process.send_signal(signal.SIGTERM)
            code = restarted.process.wait(GRACE_SECONDS + FLUSH_SECONDS + 20)
            exited = time.monotonic() - signalled
    finally:
        restarted.stop()
    assert code == 0, restarted.log()[-3000:]
    outcomes = singles.snapshot() + batches.snapshot()
    before = [o for o in outcomes if o.sent is not None and o.sent < signalled]
    # (status, when sent and when done, in seconds after the signal)
    unanswered = [
        (o.status, round(o.sent - signalled, 4), round(o.done - signalled, 4))
        for o in before
        if o.sent is not None and o.status != 200
    ]
    assert unanswered == []
    in_flight = [o for o in before if o.done > signalled]
    assert any(o.rows == 1000 for o in in_flight), "no batch was in flight at the SIGTERM"
    assert exited < GRACE_SECONDS, exited
    with sqlite3.connect(restarted.database) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    # The killed run's rows are still there; every instance answered since, before or after
    # the SIGTERM (the server had read those), is one row: the shutdown flushed them all.
    after = [dict(r) for r in restarted.rows()]
    assert_one_row_per_answer(
        [row for row in after if row["id"] not in ids], singles.answered() + batches.answered()
    )
    assert ids <= {row["id"] for row in after}
    print(
        f"kill -9: {committed:.0f} rows committed before it, {len(ids)} found, {lost} answered "
        f"rows lost from memory; SIGTERM: {len(in_flight)} requests in flight answered, exit "
        f"{exited:.2f} s after it (grace {GRACE_SECONDS} s + flush {FLUSH_SECONDS:g} s), "
        f"{len(after) - len(ids)} rows"
    )


def test_the_chart_gives_the_shutdown_its_time() -> None:
    """The pod's grace period covers uvicorn's wait for open requests and the log's flush."""
    values = yaml.safe_load((REPO / "charts" / "california-housing" / "values.yaml").read_text())
    assert values["predictor"]["terminationGracePeriodSeconds"] >= GRACE_SECONDS + FLUSH_SECONDS


# -- database outages -------------------------------------------------------------------------


@contextmanager
def under_load(tmp_path: Path, trained_registry: Any, **settings: str) -> Iterator[Traffic]:
    """The outage tests' traffic on a server whose log keeps SMALL_BUFFER rows in memory
    (`traffic.server`), once its first rows are committed; both stopped afterwards."""
    server = start_server(
        tmp_path, trained_registry.tracking_uri, log_buffer_rows=str(SMALL_BUFFER), **settings
    )
    traffic = Traffic(server, threads=4, rows=(1, 1, 10))
    try:
        server.wait_ready()
        traffic.start()
        wait_for(lambda: server.metric(f"{LOG}_written_rows_total") >= 200, 60, "commits")
        yield traffic
    finally:
        traffic.stop()
        server.stop()


@dataclass
class Outage:
    started: float
    answered: int = 0  # instances answered 200, sent after the outage began
    backlog_at_end: float = 0.0
    max_backlog: float = 0.0
    max_spilled: float = 0.0


def ride_out(server: ServerProcess, traffic: Traffic, seconds: float) -> Outage:
    """Watch the log's metrics while the database is away; the backlog at the end must hold
    at least every instance answered since the outage began (none of them can be written)."""
    outage = Outage(time.monotonic())
    while time.monotonic() - outage.started < seconds:
        counters = log_counters(server)
        outage.max_backlog = max(outage.max_backlog, counters["backlog"])
        outage.max_spilled = max(outage.max_spilled, counters["spilled_backlog"])
        time.sleep(0.25)
    outage.answered = traffic.answered_after(outage.started)
    outage.backlog_at_end = log_counters(server)["backlog"]
    return outage


def recover(server: ServerProcess, traffic: Traffic, outage: Outage) -> dict[str, float]:
    """After the database is back: drained, nothing lost, rejected or left on disk."""
    time.sleep(1.0)  # traffic continues a moment after the database is back
    traffic.stop()
    assert traffic.failures() == [], traffic.failures()[:5]
    assert outage.answered > SMALL_BUFFER, outage
    assert outage.backlog_at_end >= outage.answered, outage
    assert outage.max_spilled > 0, outage
    wait_for(lambda: log_counters(server)["backlog"] == 0, 60, "the backlog to drain")
    counters = log_counters(server)
    assert counters["spilled_rows_total"] > 0 and counters["spilled_backlog"] == 0, counters
    assert counters["dropped_rows_total"] == 0 and counters["rejected_rows_total"] == 0, counters
    # (>=: a commit whose acknowledgement the cut lost is retried and counted again, though
    # the insert, idempotent on id, adds no row.)
    assert counters["written_rows_total"] >= len(traffic.answered()), counters
    assert spill_segments(server.spill_dir) == []
    return counters


@pytest.mark.postgres
def test_postgres_outage_under_load_delays_rows_and_loses_none(
    trained_registry: Any, tmp_path: Path
) -> None:
    proxy = TcpProxy((PG_HOST, PG_PORT))
    proxy.start()
    try:
        with (
            postgres_database() as url,
            under_load(tmp_path, trained_registry, database_url=proxy.route(url)) as traffic,
        ):
            server = traffic.server
            proxy.stop()  # open connections cut, new ones refused
            outage = ride_out(server, traffic, OUTAGE_SECONDS)
            proxy.start()
            counters = recover(server, traffic, outage)
            assert server.stop() == 0, server.log()[-3000:]
            rows = postgres_rows(url)
    finally:
        proxy.stop()
    assert_one_row_per_answer(rows, traffic.answered())
    print(f"PostgreSQL outage: {outage}, {counters}")


def test_locked_sqlite_under_load_delays_rows_and_loses_none(
    trained_registry: Any, tmp_path: Path
) -> None:
    with under_load(tmp_path, trained_registry) as traffic:
        server = traffic.server
        with holding_the_write_lock(server.database):
            outage = ride_out(server, traffic, OUTAGE_SECONDS)
        counters = recover(server, traffic, outage)
        assert server.stop() == 0, server.log()[-3000:]
    assert_one_row_per_answer([dict(r) for r in server.rows()], traffic.answered())
    print(f"SQLite locked: {outage}, {counters}")


def test_rows_past_the_spill_limit_are_dropped_and_counted(
    trained_registry: Any, tmp_path: Path
) -> None:
    """SQLite locked, with spill files limited to ~1,000 rows (the chart sets 90% of the spill
    volume, which Kubernetes would evict the pod for outgrowing): the files stop at the limit,
    and every instance answered is either a row or counted as dropped, never silently gone."""
    limit = 500_000
    with under_load(tmp_path, trained_registry, spill_max_bytes=str(limit)) as traffic:
        server = traffic.server
        with holding_the_write_lock(server.database):
            wait_for(lambda: server.metric(f"{LOG}_dropped_rows_total") > 0, 60, "a drop")
            # Nothing leaves the spill files while the database is locked: a steady reading.
            on_disk = sum(path.stat().st_size for path in spill_segments(server.spill_dir))
            assert 0.9 * limit < on_disk <= limit
            assert server.metric(f"{LOG}_spill_bytes") == on_disk
            assert server.metric(f"{LOG}_spill_limit_bytes") == limit
        traffic.stop()
        wait_for(lambda: log_counters(server)["backlog"] == 0, 60, "the backlog to drain")
        counters = log_counters(server)
        assert server.stop() == 0, server.log()[-3000:]
    assert traffic.failures() == [], traffic.failures()[:5]
    rows = [dict(r) for r in server.rows()]
    answered = set(traffic.answered())
    assert {row["id"] for row in rows} <= answered
    assert len(rows) + counters["dropped_rows_total"] == len(answered), counters
    assert "spill files at their limit" in server.log()
    print(f"spill limit {limit} bytes: {on_disk} on disk at the drop; {counters}")
