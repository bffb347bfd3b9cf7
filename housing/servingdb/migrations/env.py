"""Alembic environment: migrates on the connection that RecordStore.migrate() hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from housing.servingdb.migrations import VERSION_TABLE
from housing.servingdb.models import metadata


def _ours(name: str | None, type_: str, parent_names: object) -> bool:
    # The database may be shared: never autogenerate drops of other components' tables.
    return type_ != "table" or name in metadata.tables


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        include_name=_ours,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("run the records migrations through RecordStore.migrate()")
run_migrations(_connection)
