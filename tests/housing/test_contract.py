"""The contract's profile: readers refuse a version they were not written for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from housing.contract import FEATURES, PROFILE_VERSION, ProfileError, check_profile, load_profile


def test_a_profile_of_this_version_is_read_and_another_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_built_profile()))
    assert load_profile(path).names == FEATURES
    path.write_text(json.dumps({**_built_profile(), "profile_version": PROFILE_VERSION + 1}))
    with pytest.raises(ProfileError, match="version 2; this code reads version 1"):
        load_profile(path)


@pytest.mark.parametrize(
    "profile", [{"profile_version": PROFILE_VERSION + 1}, {"features": []}, [1, 2]]
)
def test_another_version_or_shape_is_refused(profile: object) -> None:
    with pytest.raises(ProfileError):
        check_profile(profile)


def _built_profile() -> dict:
    import numpy as np
    import pandas as pd

    from housing.contract import FEATURES, TARGET
    from training_job.params import ProfileParams
    from training_job.profile import build_profile

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(1, 5, size=(300, 9)), columns=[*FEATURES, TARGET])
    params = ProfileParams(
        quantiles=[0.5], histogram_bins=5, reference_sample_size=100, domain_margin=0.1, seed=1
    )
    return build_profile(frame, params, "digest")


def test_the_typed_profile_reads_what_the_pipeline_writes() -> None:
    from housing.contract import FEATURES, Profile

    profile = Profile.parse(_built_profile())
    assert profile.names == FEATURES
    assert len(profile.features[0].reference) == 100
    assert profile.features[0].valid_min <= profile.features[0].min


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda p: p["features"][0].pop("reference"), "features.0.reference"),
        (lambda p: p["features"][1].update(bins=3), "features.1.bins"),
        (lambda p: p.update(profile_version=2), "version 2"),
    ],
)
def test_the_typed_profile_refuses_a_layout_it_would_misread(change: object, named: str) -> None:
    from housing.contract import Profile

    profile = _built_profile()
    change(profile)  # type: ignore[operator]
    with pytest.raises(ProfileError, match=named):
        Profile.parse(profile)
