"""Identity of the raw data: the md5s DVC records for its files."""

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


# Raw data files in the data folder: the original StatLib file and landed batches.
DATA_SUFFIXES = (".data", ".csv")


def data_files(path: str | Path) -> list[Path]:
    """The raw data files at `path`: the file itself, or a folder's data files, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)


def data_digest(path: str | Path) -> str:
    """The data version: DVC's md5 of the one raw file, or, once batches have landed, the md5
    of the list of (relative path, DVC md5) of every file. Any added or changed file moves it.
    """
    path = Path(path)
    files = data_files(path)
    if len(files) == 1:
        return file_md5(files[0])
    base = path if path.is_dir() else path.parent
    listing = "".join(f"{f.relative_to(base).as_posix()} {file_md5(f)}\n" for f in files)
    return hashlib.md5(listing.encode(), usedforsecurity=False).hexdigest()
