"""Alembic migrations of the records schema, driven through alembic's Config API.

No alembic.ini: `alembic_config()` points alembic at this folder, so migrations run the same
from a checkout and from an installed wheel. To add a revision (developers):

    from alembic import command
    with store.engine.begin() as connection:
        command.revision(alembic_config(connection), "add x", autogenerate=True, rev_id="0002")
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy.engine import Connection

# Own version table: the serving database may hold other components' alembic histories.
VERSION_TABLE = "records_alembic_version"
SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    """Config for this package's migrations, running on `connection` (env.py reads it)."""
    config = Config()
    # ConfigParser interpolates '%', so a path containing one must be escaped.
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    # Revision modules must be importable names (ruff N999): v0002_add_x.py.
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config
