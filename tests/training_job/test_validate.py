"""Validation of raw files: every kind of broken file is stopped with the column and lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from training_job.validate import DataValidationError, read_raw

GOOD_ROW = "-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,452600.0"


def write(tmp_path: Path, rows: list[str], name: str = "raw.data") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(rows), encoding="utf-8")
    return path


def problems_of(path: Path, min_rows: int = 1) -> list[str]:
    with pytest.raises(DataValidationError) as caught:
        read_raw(path, min_rows=min_rows)
    return [str(p) for p in caught.value.problems]


def test_the_real_file_is_valid(tmp_path: Path) -> None:
    frame = read_raw(Path(__file__).parents[2] / "data/raw/cal_housing.data", min_rows=20_000)
    assert frame.shape == (20640, 9)
    assert str(frame.dtypes.unique()[0]) == "float64"


def test_wrong_column_count_names_the_lines(tmp_path: Path) -> None:
    path = write(tmp_path, [GOOD_ROW, "1,2,3", GOOD_ROW, GOOD_ROW + ",7"])
    [problem] = problems_of(path)
    assert "[column-count]" in problem
    assert "expected 9" in problem
    assert "lines 2, 4" in problem


def test_non_numeric_value(tmp_path: Path) -> None:
    bad = GOOD_ROW.replace("8.3252", "eight")
    [problem] = problems_of(write(tmp_path, [GOOD_ROW, bad]))
    assert "column 'medianIncome'" in problem
    assert "not a number" in problem and "'eight'" in problem
    assert "line 2" in problem


def test_missing_values(tmp_path: Path) -> None:
    rows = [GOOD_ROW, GOOD_ROW.replace(",129.0,", ",,"), GOOD_ROW.replace(",129.0,", ",NaN,")]
    [problem] = problems_of(write(tmp_path, rows))
    assert "[null]" in problem and "column 'totalBedrooms'" in problem
    assert "lines 2, 3" in problem


def test_zero_households_is_impossible(tmp_path: Path) -> None:
    rows = [GOOD_ROW, GOOD_ROW.replace(",126.0,", ",0,")]
    [problem] = problems_of(write(tmp_path, rows))
    assert "[impossible]" in problem and "column 'households'" in problem and "line 2" in problem


def test_negative_counts(tmp_path: Path) -> None:
    rows = [GOOD_ROW.replace(",322.0,", ",-5,"), GOOD_ROW]
    problems = problems_of(write(tmp_path, rows))
    assert any("column 'population'" in p and "negative" in p and "line 1" in p for p in problems)


def test_latitude_outside_california(tmp_path: Path) -> None:
    rows = [GOOD_ROW, GOOD_ROW.replace("37.88", "51.5")]
    [problem] = problems_of(write(tmp_path, rows))
    assert "column 'latitude'" in problem and "above the maximum" in problem


def test_infinite_value(tmp_path: Path) -> None:
    rows = [GOOD_ROW, GOOD_ROW.replace("8.3252", "inf")]
    [problem] = problems_of(write(tmp_path, rows))
    assert "[finite]" in problem and "column 'medianIncome'" in problem


def test_more_bedrooms_than_rooms(tmp_path: Path) -> None:
    rows = [GOOD_ROW.replace("880.0,129.0", "100.0,129.0")]
    [problem] = problems_of(write(tmp_path, rows))
    assert "[consistency]" in problem and "totalBedrooms" in problem


def test_too_few_rows(tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, [GOOD_ROW] * 3), min_rows=1000)
    assert "[row-count]" in problem and "3 data rows" in problem and "1000" in problem


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    rows = [
        GOOD_ROW.replace(",126.0,", ",0,"),
        GOOD_ROW.replace("37.88", "99"),
        "garbage",
    ]
    problems = problems_of(write(tmp_path, rows), min_rows=10)
    checks = {p.split("]")[0] + "]" for p in problems}
    assert checks == {"[impossible]", "[range]", "[column-count]", "[row-count]"}


def test_many_bad_lines_are_summarised(tmp_path: Path) -> None:
    rows = [GOOD_ROW.replace(",126.0,", ",0,")] * 25
    [problem] = problems_of(write(tmp_path, rows))
    assert "and 15 more" in problem


def test_not_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.data"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert "[encoding]" in problems_of(path)[0]
    assert "does not exist" in problems_of(tmp_path / "nope.data")[0]


def test_the_derived_features_are_held_to_the_contracts_physical_bounds() -> None:
    """The pipeline applies the bounds the server applies (housing.contract), by feature."""
    import pandas as pd

    from housing.contract import FEATURES
    from training_job.validate import check_features

    good = dict(zip(FEATURES, (3.0, 20.0, 5.0, 1.0, 1000.0, 2.5, 37.0, -122.0), strict=True))
    rows = [good, good | {"AveOccup": 0.0}, good | {"AveBedrms": 6.0}, good | {"AveOccup": 0.0}]
    check_features(pd.DataFrame([good, good]), "ok")
    with pytest.raises(DataValidationError) as error:
        check_features(pd.DataFrame(rows), "batch")
    found = {p.column: (p.check, p.lines) for p in error.value.problems}
    assert found == {"AveOccup": ("impossible", (2, 4)), "AveBedrms": ("impossible", (3,))}
    assert "AveOccup must be > 0" in str(error.value)
