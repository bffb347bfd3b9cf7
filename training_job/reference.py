"""The frozen reference set: held-out rows that new data never changes, kept by DVC.

The test split moves with the data: rows that land join it, so a batch of corrupted labels
corrupts the yardstick as well (scenario 4: champion 0.474 vs challenger 0.495 on the polluted
test rows, where the margin alone would have promoted the challenger). The reference set is
the original file's test split, frozen once (`python -m training_job freeze-reference`), as a
DVC-tracked raw file; the gate scores champion and challenger on it as well and refuses a
challenger that is worse there by more than `register.reference_tolerance`.

Its rows are test rows under the pipeline's split salt (features.split_buckets hashes a row's
values), so no model ever trains on them while `prepare.split_salt` is the one they were
frozen with; `freeze` records that salt and `load_reference` refuses another.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from housing.contract import FEATURES, RAW_COLUMNS, TARGET
from training_job.features import assign_splits, derive_features, split_buckets
from training_job.params import REFERENCE
from training_job.validate import read_raw

ROWS_FILE = "reference.data"
INFO_FILE = "reference.json"


class ReferenceError(RuntimeError):
    """The reference set is missing, or was frozen under another split salt."""


def freeze(raw_file: Path, folder: Path, salt: str, test_percent: int, val_percent: int) -> int:
    """Write the test split of `raw_file` to `folder` (refusing to overwrite); its row count."""
    rows_path = folder / ROWS_FILE
    if rows_path.exists():
        raise ReferenceError(f"{rows_path} exists: the reference set is frozen, never rewritten")
    raw = read_raw(raw_file, min_rows=1)
    split = assign_splits(split_buckets(raw, salt), test_percent, val_percent)
    held_out = raw[split == "test"]
    folder.mkdir(parents=True, exist_ok=True)
    # The raw file's own layout (cal_housing.data: no header), so that read_raw validates it.
    held_out[list(RAW_COLUMNS)].to_csv(rows_path, header=False, index=False)
    info = {"source": raw_file.as_posix(), "split_salt": salt, "rows": len(held_out)}
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return len(held_out)


def load_reference(folder: Path, salt: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The reference rows' features and target; ReferenceError if absent or of another salt."""
    rows_path = folder / ROWS_FILE
    if not rows_path.exists():
        raise ReferenceError(
            f"no frozen reference set at {rows_path}: `dvc pull {REFERENCE}` (or, once, "
            "`python -m training_job freeze-reference`)"
        )
    info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    if info["split_salt"] != salt:
        raise ReferenceError(
            f"the reference set was frozen under split salt {info['split_salt']!r}, the pipeline "
            f"splits with {salt!r}: its rows may be training rows now"
        )
    frame = derive_features(read_raw(rows_path, min_rows=1))
    return frame[list(FEATURES)], frame[TARGET].to_numpy()
