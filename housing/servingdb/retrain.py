"""Retraining state in the serving database: the policy, every decision, and the lease.

The server writes the policy (POST /retrain/config) and reads decisions (GET /retrain/logs);
the training job reads the policy, holds the lease while it runs and records its decisions.
Both go through this module, so the tables have one owner and one migration history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from housing.policy import CONCLUDED, FINISHED, Outcome
from housing.servingdb.models import retrain_config, retrain_decisions, retrain_lease
from housing.servingdb.store import RecordStore, _translate_errors

LEASE = "retrain"


@dataclass(frozen=True)
class RetrainOverview:
    """What the server's gauges say about retraining, read in one go."""

    lease: dict[str, Any] | None
    outcomes: dict[str, int] = field(default_factory=dict)
    last_decided_at: datetime | None = None
    last_concluded_at: datetime | None = None  # finished_at of the newest gate verdict
    last_finished_outcome: str | None = None  # of the newest run that went and finished


def _now() -> datetime:
    return datetime.now(UTC)


class RetrainStore:
    """Policy, decisions and lease, on the same database as the prediction records."""

    def __init__(self, records: RecordStore) -> None:
        self.engine = records.engine
        self._begin_exclusive = records.dialect == "sqlite"

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        with _translate_errors(), self.engine.connect() as connection:
            if self._begin_exclusive:
                # Take SQLite's write lock up front: read-then-write must not interleave.
                connection.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            with connection.begin():
                yield connection

    # -- policy ---------------------------------------------------------------------------
    def policy(self) -> dict[str, Any]:
        """The stored policy ({} = defaults everywhere)."""
        with _translate_errors(), self.engine.connect() as connection:
            row = connection.execute(sa.select(retrain_config.c.policy)).first()
        return dict(row[0]) if row else {}

    def set_policy(self, policy: dict[str, Any]) -> None:
        with self._transaction() as connection:
            self._write_policy(connection, policy)

    def update_policy(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Read, change and write the stored policy in one transaction; the new policy.
        `change` may raise to write nothing."""
        with self._transaction() as connection:
            query = sa.select(retrain_config.c.policy)
            if not self._begin_exclusive:
                query = query.with_for_update()
            row = connection.execute(query).first()
            policy = change(dict(row[0]) if row else {})
            self._write_policy(connection, policy)
        return policy

    @staticmethod
    def _write_policy(connection: sa.Connection, policy: dict[str, Any]) -> None:
        connection.execute(sa.delete(retrain_config))
        connection.execute(sa.insert(retrain_config).values(id=1, policy=policy, updated_at=_now()))

    # -- decisions ------------------------------------------------------------------------
    def record_decision(
        self,
        *,
        source: str,
        forced: bool,
        go: bool,
        triggers: list[str],
        reasons: list[str],
        signals: dict[str, Any],
        policy: dict[str, Any],
        outcome: Outcome,
    ) -> int:
        now = _now()
        with self._transaction() as connection:
            result = connection.execute(
                sa.insert(retrain_decisions).values(
                    decided_at=now,
                    source=source,
                    forced=forced,
                    go=go,
                    triggers=triggers,
                    reasons=reasons,
                    signals=json.loads(json.dumps(signals, default=str)),
                    policy=policy,
                    outcome=Outcome(outcome).value,
                    started_at=now if outcome == Outcome.RUNNING else None,
                    finished_at=None if outcome == Outcome.RUNNING else now,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def finish_decision(
        self,
        decision_id: int,
        outcome: Outcome,
        model_version: str | None,
        error: str | None = None,
    ) -> None:
        with self._transaction() as connection:
            connection.execute(
                sa.update(retrain_decisions)
                .where(retrain_decisions.c.id == decision_id)
                .values(
                    outcome=Outcome(outcome).value,
                    finished_at=_now(),
                    model_version=model_version,
                    error=error,
                )
            )

    def decisions(self, limit: int) -> list[dict[str, Any]]:
        query = sa.select(retrain_decisions).order_by(retrain_decisions.c.id.desc()).limit(limit)
        with _translate_errors(), self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
            for row in rows
        ]

    def last_run_started(self) -> datetime | None:
        """When the last retrain that actually ran (not skipped) started."""
        query = sa.select(sa.func.max(retrain_decisions.c.started_at))
        with _translate_errors(), self.engine.connect() as connection:
            value = connection.execute(query).scalar()
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def overview(self) -> RetrainOverview:
        """Lease, decisions by outcome, and the newest decision, verdict and finished run."""
        d = retrain_decisions
        with _translate_errors(), self.engine.connect() as connection:
            outcomes = {
                str(outcome): int(count)
                for outcome, count in connection.execute(
                    sa.select(d.c.outcome, sa.func.count()).group_by(d.c.outcome)
                )
            }
            last_decided = connection.execute(sa.select(sa.func.max(d.c.decided_at))).scalar()
            last_concluded = connection.execute(
                sa.select(sa.func.max(d.c.finished_at)).where(
                    d.c.outcome.in_([o.value for o in CONCLUDED])
                )
            ).scalar()
            last_finished = connection.execute(
                sa.select(d.c.outcome)
                .where(d.c.go.is_(sa.true()), d.c.outcome.in_([o.value for o in FINISHED]))
                .order_by(d.c.id.desc())
                .limit(1)
            ).scalar()
        return RetrainOverview(
            lease=self.lease(),
            outcomes=outcomes,
            # max() keeps its column's type, so these come back aware on every dialect.
            last_decided_at=last_decided,
            last_concluded_at=last_concluded,
            last_finished_outcome=last_finished,
        )

    # -- lease ----------------------------------------------------------------------------
    def acquire(self, holder: str, ttl: float) -> dict[str, Any] | None:
        """Take the lease for `ttl` seconds. None if taken; else the lease it replaced (an
        expired holder means a run died: its decision is marked abandoned)."""
        now = _now()
        with self._transaction() as connection:
            query = sa.select(retrain_lease).where(retrain_lease.c.name == LEASE)
            if not self._begin_exclusive:
                query = query.with_for_update()
            current = connection.execute(query).mappings().first()
            if current is not None and current["expires_at"] > now and current["holder"] != holder:
                return None
            if current is not None:
                connection.execute(sa.delete(retrain_lease).where(retrain_lease.c.name == LEASE))
                if current["decision_id"] is not None:
                    connection.execute(
                        sa.update(retrain_decisions)
                        .where(
                            (retrain_decisions.c.id == current["decision_id"])
                            & (retrain_decisions.c.outcome == Outcome.RUNNING.value)
                        )
                        .values(
                            outcome=Outcome.ABANDONED.value, finished_at=now, error="lease expired"
                        )
                    )
            connection.execute(
                sa.insert(retrain_lease).values(
                    name=LEASE,
                    holder=holder,
                    acquired_at=now,
                    expires_at=now + timedelta(seconds=ttl),
                )
            )
            return dict(current) if current else {}

    def renew(self, holder: str, ttl: float, decision_id: int | None = None) -> bool:
        values: dict[str, Any] = {"expires_at": _now() + timedelta(seconds=ttl)}
        if decision_id is not None:
            values["decision_id"] = decision_id
        with self._transaction() as connection:
            result = connection.execute(
                sa.update(retrain_lease)
                .where((retrain_lease.c.name == LEASE) & (retrain_lease.c.holder == holder))
                .values(**values)
            )
        return bool(result.rowcount)

    def release(self, holder: str) -> None:
        with self._transaction() as connection:
            connection.execute(
                sa.delete(retrain_lease).where(
                    (retrain_lease.c.name == LEASE) & (retrain_lease.c.holder == holder)
                )
            )

    def lease(self) -> dict[str, Any] | None:
        """The current, unexpired lease, if any."""
        with _translate_errors(), self.engine.connect() as connection:
            row = (
                connection.execute(sa.select(retrain_lease).where(retrain_lease.c.name == LEASE))
                .mappings()
                .first()
            )
        if row is None or row["expires_at"] <= _now():
            return None
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
