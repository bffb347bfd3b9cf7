"""Step 1 of the pipeline: validate the raw file, derive features, split, profile."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from training_job.datafile import dvc_recorded_md5, file_md5
from training_job.features import assign_splits, derive_features, split_buckets
from training_job.io import read_json, write_json
from training_job.params import PrepareParams
from training_job.profile import PROFILE_FILENAME, build_profile
from training_job.validate import read_raw

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
    """Validate `raw_path` and write the splits, the profile and the data info to `out_dir`.

    Raises DataValidationError before writing anything if the file is not fit for training.
    """
    raw = read_raw(raw_path, min_rows=params.min_rows)
    digest = file_md5(raw_path)
    recorded = dvc_recorded_md5(raw_path)
    if recorded is not None and recorded != digest:
        log.warning("%s differs from its .dvc record (%s); run `dvc add`", raw_path, recorded)

    frame = derive_features(raw)
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
