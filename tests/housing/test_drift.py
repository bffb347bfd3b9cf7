"""The drift statistics themselves, against scipy's reference computations."""

from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp

from housing.contract import FeatureProfile, Histogram
from housing.drift import feature_drift, ks_critical


def _feature(reference: np.ndarray) -> FeatureProfile:
    edges = np.quantile(reference, np.linspace(0.1, 0.9, 9))
    proportions = np.histogram(reference, np.concatenate(([-np.inf], edges, [np.inf])))[0]
    return FeatureProfile(
        name="HouseAge",
        dtype="double",
        min=float(reference.min()),
        max=float(reference.max()),
        mean=float(reference.mean()),
        std=float(reference.std()),
        quantiles={},
        histogram=Histogram(
            edges=tuple(edges.tolist()), proportions=tuple((proportions / 2000).tolist())
        ),
        reference=tuple(reference.tolist()),
        valid_min=0.0,
        valid_max=100.0,
    )


def test_ks_is_the_exact_two_sample_statistic_ties_included() -> None:
    rng = np.random.default_rng(7)
    # Integer-valued like HouseAge: many ties, where a careless statistic goes wrong.
    reference = rng.integers(1, 53, 2000).astype("float64")
    live = rng.integers(5, 53, 1000).astype("float64")
    feature = _feature(reference)
    drift = feature_drift(feature, live, 0.05 / 8)
    exact = ks_2samp(live, reference, method="exact").statistic
    assert abs(drift.ks - exact) < 1e-12
    assert drift.ks > 0.05  # the live sample starts at 5: a real shift, seen
    same = feature_drift(feature, reference[:1000], 0.05 / 8)
    assert same.ks < drift.ks and same.psi < drift.psi


def test_the_critical_value_is_scipys_asymptotic_test() -> None:
    """statistic > critical exactly when ks_2samp's asymptotic p-value < alpha."""
    rng = np.random.default_rng(3)
    reference = rng.normal(size=2000)
    critical = ks_critical(1000, 2000, 0.05 / 8)
    for shift in np.linspace(0.0, 0.3, 31):
        live = rng.normal(loc=shift, size=1000)
        result = ks_2samp(live, reference, method="asymp")
        assert (result.statistic > critical) == (result.pvalue < 0.05 / 8)
    # Smaller windows need a larger gap to be sure.
    assert ks_critical(200, 2000, 0.05) > ks_critical(1000, 2000, 0.05)
