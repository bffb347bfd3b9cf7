"""Drift of live inputs against the reference distribution logged with the model.

One rule, used by the server (live gauges, and the alert that compares them), by the training
job (the retraining decision) and by the power test (tests/housing/test_drift_power.py):

- **The trigger: a two-sample Kolmogorov-Smirnov test per feature, Bonferroni-corrected.**
  Each feature of the window is compared with the profile's reference sample (2,000 training
  values, seeded); a feature has drifted when its KS statistic exceeds the critical value at
  `alpha / features` (the policy's drift_alpha, 0.05 by default: at most a 5% chance that an
  unshifted window flags any feature). The critical value is scipy's own asymptotic one
  (`kstwo` with n = m·k/(m + k), what `ks_2samp(method="asymp")` uses for its p-value), so
  "statistic > critical" and "p-value < alpha / features" are the same test; the server
  exports both numbers and the alert compares them. Measured power (docs/retraining.md): a 10%
  income inflation is caught in >= 90% of 1,000-row windows, geographic shifts in all, false
  alarms on unshifted windows <= 5%. PSI missed the income shift entirely (0 of 200 windows,
  median max PSI 0.057): its ten equal-frequency bins do not see a shift that small.
- PSI (population stability index) over the profile's equal-frequency bins is still computed
  and exported (dashboards read it), and the policy's drift_threshold on it still triggers:
  it is the rule for gross shifts that an operator reads at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import rel_entr
from scipy.stats import kstwo

from housing.contract import FeatureProfile, Profile

# Floor for empty bins: keeps PSI finite when a window leaves a bin empty (a common choice).
_EPSILON = 1e-4
# The policy's default family-wise false-alarm rate (housing.policy.RetrainPolicy.drift_alpha).
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True, order=True)
class FeatureDrift:
    feature: str
    psi: float
    ks: float
    """The two-sample KS statistic against the profile's reference sample."""
    ks_critical: float
    """The statistic above which this feature has drifted (at alpha / features)."""
    window: int

    @property
    def drifted(self) -> bool:
        return self.ks > self.ks_critical


def psi(
    expected: Sequence[float] | np.ndarray, observed_counts: Sequence[float] | np.ndarray
) -> float:
    """PSI between the reference bin proportions and observed bin counts."""
    p = np.clip(np.asarray(expected, dtype="float64"), _EPSILON, None)
    total = float(np.sum(observed_counts))
    if total <= 0:
        return 0.0
    q = np.clip(np.asarray(observed_counts, dtype="float64") / total, _EPSILON, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(rel_entr(q, p) + rel_entr(p, q)))


@lru_cache(maxsize=256)
def ks_critical(window: int, reference: int, alpha: float) -> float:
    """The two-sided KS statistic whose asymptotic p-value is `alpha`, for samples of these
    sizes (scipy's ks_2samp "asymp" rule). Cached: windows have few distinct sizes."""
    effective = round(window * reference / (window + reference))
    return float(kstwo.isf(alpha, effective))


def ks_statistic(values: np.ndarray, reference_sorted: np.ndarray) -> float:
    """The two-sample KS statistic: the largest gap between the two empirical CDFs.

    Computed directly (two sorts and two searches) rather than by scipy.stats.ks_2samp, whose
    default p-value stalled serving under load on 2026-11-26 (~9 ms a feature holding the
    GIL); the p-value is not needed, the critical value above is the test.
    """
    window = np.sort(values)
    both = np.concatenate([window, reference_sorted])
    cdf_window = np.searchsorted(window, both, side="right") / len(window)
    cdf_reference = np.searchsorted(reference_sorted, both, side="right") / len(reference_sorted)
    return float(np.max(np.abs(cdf_window - cdf_reference)))


def feature_drift(
    feature: FeatureProfile, values: np.ndarray, alpha_per_feature: float
) -> FeatureDrift:
    """Drift of `values` (one feature's live window) against its profile entry."""
    edges = np.asarray(feature.histogram.edges, dtype="float64")
    # Bins exactly as np.histogram made the profile's: [-inf, e0), [e0, e1), ..., [e_last, inf].
    # (Side matters: integer-valued features such as HouseAge sit on the edges.)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    reference = _sorted_reference(feature.reference)
    return FeatureDrift(
        feature=feature.name,
        psi=psi(feature.histogram.proportions, counts),
        ks=ks_statistic(values, reference),
        ks_critical=ks_critical(len(values), len(reference), alpha_per_feature),
        window=len(values),
    )


@lru_cache(maxsize=64)
def _sorted_reference(reference: tuple[float, ...]) -> np.ndarray:
    # The profile is immutable (a frozen model per loaded version): sort its sample once.
    return np.sort(np.asarray(reference, dtype="float64"))


def profile_drift(
    profile: Profile, window: np.ndarray, alpha: float = DEFAULT_ALPHA
) -> list[FeatureDrift]:
    """Drift of every feature; `window` is [N, features] in the profile's feature order.
    `alpha` is the family-wise false-alarm rate, split evenly over the features (Bonferroni)."""
    features = profile.features
    if window.ndim != 2 or window.shape[1] != len(features) or len(window) == 0:
        return []
    per_feature = alpha / len(features)
    return [feature_drift(f, window[:, i], per_feature) for i, f in enumerate(features)]
