"""The drift statistics themselves, against scipy's reference computations."""

from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp

from housing.drift import feature_drift


def test_ks_is_the_exact_two_sample_statistic_ties_included() -> None:
    rng = np.random.default_rng(7)
    # Integer-valued like HouseAge: many ties, where a careless statistic goes wrong.
    reference = rng.integers(1, 53, 2000).astype("float64")
    live = rng.integers(5, 53, 1000).astype("float64")
    edges = np.quantile(reference, np.linspace(0.1, 0.9, 9))
    proportions = np.histogram(reference, np.concatenate(([-np.inf], edges, [np.inf])))[0]
    feature = {
        "name": "HouseAge",
        "reference": reference.tolist(),
        "histogram": {"edges": edges.tolist(), "proportions": (proportions / 2000).tolist()},
    }
    drift = feature_drift(feature, live)
    exact = ks_2samp(live, reference, method="exact").statistic
    assert abs(drift.ks - exact) < 1e-12
    assert drift.ks > 0.05  # the live sample starts at 5: a real shift, seen
    same = feature_drift(feature, reference[:1000])
    assert same.ks < drift.ks and same.psi < drift.psi
