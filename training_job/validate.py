"""Validation of a raw data file before anything is trained on it.

Every problem found is collected (not just the first) and reported with the column and the
1-based line numbers of the file, so that whoever produced the file can fix it in one go.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from housing.contract import FEATURES, RAW_COLUMNS, RAW_RANGES, physical_violations

# How many offending line numbers a message lists before it says "and N more".
_MAX_LINES_SHOWN = 10


@dataclass(frozen=True)
class Problem:
    """One kind of defect in one column (or in the file as a whole)."""

    check: str
    message: str
    column: str | None = None
    lines: tuple[int, ...] = ()
    file: str | None = None

    def __str__(self) -> str:
        where = f"column '{self.column}': " if self.column else ""
        text = f"[{self.check}] {f'{self.file}: ' if self.file else ''}{where}{self.message}"
        if self.lines:
            shown = ", ".join(str(n) for n in self.lines[:_MAX_LINES_SHOWN])
            more = len(self.lines) - _MAX_LINES_SHOWN
            text += f" (line{'s' if len(self.lines) > 1 else ''} {shown}"
            text += f" and {more} more)" if more > 0 else ")"
        return text


@dataclass
class DataValidationError(Exception):
    """The file is not fit for training; `problems` says why, column by column."""

    path: str
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{self.path}: {len(self.problems)} data problem(s), nothing was trained:"
        return "\n  ".join([head, *(str(p) for p in self.problems)])


def _lines(mask: np.ndarray | pd.Series) -> tuple[int, ...]:
    # Data row i (0-based) is line i + 1 of the header-less file.
    return tuple(int(i) + 1 for i in np.flatnonzero(np.asarray(mask)))


def read_raw(path: str | Path, min_rows: int) -> pd.DataFrame:
    """Read and validate `path`; return the raw frame (float64 columns) or raise."""
    path = Path(path)
    problems: list[Problem] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataValidationError(str(path), [Problem("file", "the file does not exist")]) from None
    except UnicodeDecodeError as exc:
        raise DataValidationError(
            str(path), [Problem("encoding", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None

    rows = [line.split(",") for line in text.splitlines()]
    # A trailing empty line is harmless; an empty line in the middle is a broken row.
    while rows and rows[-1] == [""]:
        rows.pop()
    widths = np.array([len(r) for r in rows], dtype=int)
    bad_width = widths != len(RAW_COLUMNS)
    if bad_width.any():
        problems.append(
            Problem(
                "column-count",
                f"expected {len(RAW_COLUMNS)} comma-separated columns "
                f"({', '.join(RAW_COLUMNS)}), found {sorted(set(widths[bad_width].tolist()))}",
                lines=_lines(bad_width),
            )
        )
    good_rows = [r if len(r) == len(RAW_COLUMNS) else [""] * len(RAW_COLUMNS) for r in rows]
    cells = pd.DataFrame(good_rows, columns=list(RAW_COLUMNS), dtype="string")

    frame = pd.DataFrame(index=cells.index)
    for column in RAW_COLUMNS:
        raw = cells[column].str.strip()
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        blank = (raw == "") | raw.str.lower().isin(["nan", "na", "null", "none"])
        blank &= ~pd.Series(bad_width, index=cells.index)
        not_numeric = values.isna() & ~blank & ~pd.Series(bad_width, index=cells.index)
        if blank.any():
            problems.append(Problem("null", "missing value", column, _lines(blank)))
        if not_numeric.any():
            example = raw[not_numeric].iloc[0]
            problems.append(
                Problem("type", f"not a number (e.g. {example!r})", column, _lines(not_numeric))
            )
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            problems.append(Problem("finite", "infinite value", column, _lines(infinite)))
        _check_range(values.where(~np.isinf(values)), column, problems)
        frame[column] = values

    if "totalBedrooms" in frame and "totalRooms" in frame:
        too_many = (frame["totalBedrooms"] > frame["totalRooms"]).to_numpy()
        if too_many.any():
            problems.append(
                Problem(
                    "consistency",
                    "more bedrooms than rooms",
                    "totalBedrooms",
                    _lines(too_many),
                )
            )

    if len(rows) < min_rows:
        problems.append(
            Problem("row-count", f"{len(rows)} data rows, at least {min_rows} are required")
        )
    if problems:
        raise DataValidationError(str(path), problems)
    return frame


def read_raw_files(files: list[Path], source: str, min_rows: int) -> pd.DataFrame:
    """Read and validate several raw files (the original and landed batches) as one data set.

    Every file is checked; problems name their file. The row count applies to the total.
    """
    if not files:
        raise DataValidationError(source, [Problem("file", "no data files (*.data, *.csv)")])
    frames, problems = [], []
    for path in files:
        try:
            frames.append(read_raw(path, min_rows=1))
        except DataValidationError as exc:
            problems += [replace(p, file=path.name) for p in exc.problems]
    rows = sum(len(f) for f in frames)
    if not problems and rows < min_rows:
        problems.append(Problem("row-count", f"{rows} data rows, at least {min_rows} are required"))
    if problems:
        raise DataValidationError(source, problems)
    return pd.concat(frames, ignore_index=True)


def _check_range(values: pd.Series, column: str, problems: list[Problem]) -> None:
    limits = RAW_RANGES[column]
    finite = values.notna().to_numpy()
    array = values.to_numpy()
    if limits.low is not None:
        below = finite & (array < limits.low)
        if below.any():
            word = "negative" if limits.low == 0 else f"below {limits.low:g}"
            problems.append(
                Problem("range", f"{word} value (minimum {limits.low:g})", column, _lines(below))
            )
    if limits.high is not None and not math.isinf(limits.high):
        above = finite & (array > limits.high)
        if above.any():
            problems.append(
                Problem("range", f"above the maximum {limits.high:g}", column, _lines(above))
            )
    if limits.positive:
        zero = finite & (array == 0)
        if zero.any():
            problems.append(
                Problem(
                    "impossible", "zero, which cannot occur (must be > 0)", column, _lines(zero)
                )
            )


def check_features(features: pd.DataFrame, source: str) -> None:
    """The derived features against the contract's physical bounds (housing.contract), the
    same the server applies to every request: raise DataValidationError naming each feature
    and the rows (counted from 1 over all files) that break them. The raw checks above make
    this unreachable for data from the census file; it holds the two sides to one rule."""
    violations = physical_violations(FEATURES, features[list(FEATURES)].to_numpy("float64"))
    by_feature: dict[str, list[int]] = {}
    first: dict[str, str] = {}
    for v in violations:
        by_feature.setdefault(v.feature, []).append(v.row + 1)
        first.setdefault(v.feature, v.message)
    if by_feature:
        raise DataValidationError(
            source,
            [
                Problem("impossible", f"e.g. {first[name]}", name, tuple(rows))
                for name, rows in by_feature.items()
            ],
        )
