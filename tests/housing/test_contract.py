"""The contract's profile: readers refuse a version they were not written for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from housing.contract import PROFILE_VERSION, ProfileError, check_profile, read_profile


def test_a_profile_of_this_version_is_read(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"profile_version": PROFILE_VERSION, "features": []}))
    assert read_profile(path)["features"] == []


@pytest.mark.parametrize(
    "profile", [{"profile_version": PROFILE_VERSION + 1}, {"features": []}, [1, 2]]
)
def test_another_version_or_shape_is_refused(profile: object) -> None:
    with pytest.raises(ProfileError):
        check_profile(profile)
