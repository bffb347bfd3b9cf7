"""The installed project's version, from its package metadata (pyproject.toml is its owner)."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "california-housing-mlops"


def version() -> str:
    """The version of the installed distribution; "unknown" when run from a bare source tree."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
