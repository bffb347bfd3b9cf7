"""Database URLs: one parser (SQLAlchemy's) for the SQLite files of the embedded default, the
serving database's and MLflow's alike."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def sqlite_file(url: str) -> Path | None:
    """The file of a sqlite:/// URL (relative: sqlite:///a/b.db, absolute: sqlite:////a/b.db);
    None for another scheme, an in-memory database or a string that is no URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.query.get("mode") == "memory":
        return None
    return Path(parsed.database)


def absolute_sqlite_url(url: str) -> str:
    """`url` with a relative SQLite file made absolute (another process's working directory
    may differ); any other URL unchanged."""
    path = sqlite_file(url)
    if path is None or path.is_absolute():
        return url
    return make_url(url).set(database=str(path.resolve())).render_as_string(hide_password=False)
