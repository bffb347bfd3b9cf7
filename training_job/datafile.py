"""Identity of a raw data file: the md5 DVC records for it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml


def file_md5(path: str | Path) -> str:
    """md5 of the file's bytes: what DVC 3 stores as `md5` in the file's .dvc record."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_recorded_md5(path: str | Path) -> str | None:
    """The md5 in `<path>.dvc`, if the file is tracked with `dvc add`."""
    record = Path(f"{path}.dvc")
    if not record.exists():
        return None
    outs = (yaml.safe_load(record.read_text(encoding="utf-8")) or {}).get("outs") or []
    return str(outs[0]["md5"]) if outs and "md5" in outs[0] else None
