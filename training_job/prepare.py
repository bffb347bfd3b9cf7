"""Step 1 of the pipeline: validate the raw file, derive features, split, profile."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from housing.contract import PROFILE_FILENAME
from training_job.datafile import data_digest, data_files, dvc_recorded_md5, file_md5
from training_job.features import assign_splits, derive_features, split_buckets
from training_job.io import read_json, write_json
from training_job.params import PrepareParams
from training_job.profile import build_profile
from training_job.validate import check_features, read_raw_files

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DATA_INFO = "data_info.json"


@dataclass(frozen=True)
class Prepared:
    """The prepared data set as the later steps read it."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    info: dict


def prepare(raw_path: Path, out_dir: Path, metrics_path: Path, params: PrepareParams) -> dict:
    """Validate the raw data at `raw_path` (a file, or the folder of the original file and the
    landed batches) and write the splits, the profile and the data info to `out_dir`.

    Raises DataValidationError before writing anything if the data is not fit for training.
    """
    files = data_files(raw_path)
    raw = read_raw_files(files, raw_path.as_posix(), min_rows=params.min_rows)
    digest = data_digest(raw_path)
    for path in files:
        recorded = dvc_recorded_md5(path)
        if recorded is not None and recorded != file_md5(path):
            log.warning("%s differs from its .dvc record (%s); run `dvc add`", path, recorded)

    frame = derive_features(raw)
    check_features(frame, raw_path.as_posix())
    split = assign_splits(
        split_buckets(raw, params.split_salt), params.test_percent, params.val_percent
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in SPLITS:
        part = frame[split == name].reset_index(drop=True)
        part.to_parquet(out_dir / f"{name}.parquet", index=False)
        counts[name] = len(part)

    train = frame[split == "train"]
    write_json(out_dir / PROFILE_FILENAME, build_profile(train, params.profile, digest))
    info = {
        "source": raw_path.as_posix(),
        "digest": digest,
        "rows": len(frame),
        "files": [p.as_posix() for p in files],
        "split_rows": counts,
        "split_salt": params.split_salt,
    }
    write_json(out_dir / DATA_INFO, info)
    write_json(metrics_path, {"rows": len(frame), **{f"{k}_rows": v for k, v in counts.items()}})
    log.info("prepared %d rows from %s (md5 %s): %s", len(frame), raw_path, digest, counts)
    return info


def load_prepared(prepared_dir: Path) -> Prepared:
    """Read what `prepare` wrote."""
    parts = {name: pd.read_parquet(prepared_dir / f"{name}.parquet") for name in SPLITS}
    return Prepared(**parts, info=read_json(prepared_dir / DATA_INFO))
