"""The data version: DVC's md5 of the raw file, or of the list of files once batches land."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.pipeline import RAW_DATA, REPO
from training_job.datafile import data_digest, data_files, dvc_recorded_md5, file_md5


def test_single_file_digest_is_the_dvc_md5() -> None:
    assert file_md5(RAW_DATA) == dvc_recorded_md5(RAW_DATA) == "01d0b31df796a8d4b7a6ce4c37f42dbc"
    # The folder with only the original file has the same version as the file.
    assert data_digest(REPO / "data/raw") == data_digest(RAW_DATA) == file_md5(RAW_DATA)


def test_a_landed_batch_changes_the_digest(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "batches").mkdir(parents=True)
    shutil.copy(RAW_DATA, raw / "cal_housing.data")
    (raw / ".gitignore").write_text("/cal_housing.data\n")
    before = data_digest(raw)
    (raw / "batches" / "b1.csv").write_text(RAW_DATA.read_text().splitlines()[0])
    after = data_digest(raw)
    assert before == file_md5(RAW_DATA) != after
    assert [p.name for p in data_files(raw)] == ["b1.csv", "cal_housing.data"]
    # Same files, same digest; a changed batch, another digest.
    assert data_digest(raw) == after
    (raw / "batches" / "b1.csv").write_text("x")
    assert data_digest(raw) != after
