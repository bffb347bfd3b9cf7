"""The feature profile: the model's input contract, logged inside every model version.

The server validates requests against `valid_min`/`valid_max` and measures drift against
`histogram` (PSI) and `reference` (the KS statistic, for context). Its layout is documented
in docs/model-contract.md; its version and file name are housing.contract's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from housing.contract import FEATURES, NON_NEGATIVE_FEATURES, PROFILE_VERSION, TARGET
from training_job.params import ProfileParams


def _column_profile(values: np.ndarray, params: ProfileParams, rng: np.random.Generator) -> dict:
    lo, hi = float(values.min()), float(values.max())
    # Equal-frequency bins on the training data; the outer edges are open so that live values
    # outside the training range still fall in a bin.
    inner = np.unique(np.quantile(values, np.linspace(0, 1, params.histogram_bins + 1)[1:-1]))
    counts = np.histogram(values, bins=[-np.inf, *inner.tolist(), np.inf])[0]
    size = min(params.reference_sample_size, len(values))
    sample = rng.choice(values, size=size, replace=False)
    return {
        "min": lo,
        "max": hi,
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "quantiles": {
            str(q): float(v)
            for q, v in zip(params.quantiles, np.quantile(values, params.quantiles), strict=True)
        },
        "histogram": {"edges": inner.tolist(), "proportions": (counts / counts.sum()).tolist()},
        "reference": [float(v) for v in sample],
    }


def build_profile(train: pd.DataFrame, params: ProfileParams, data_digest: str) -> dict[str, Any]:
    """Profile every feature (and the target) of the training split."""
    rng = np.random.default_rng(params.seed)
    features = []
    for name in FEATURES:
        values = train[name].to_numpy(dtype="float64")
        column = {"name": name, "dtype": "double", **_column_profile(values, params, rng)}
        pad = params.domain_margin * (column["max"] - column["min"])
        low = column["min"] - pad
        column["valid_min"] = max(low, 0.0) if name in NON_NEGATIVE_FEATURES else low
        column["valid_max"] = column["max"] + pad
        features.append(column)
    target = {"name": TARGET, **_column_profile(train[TARGET].to_numpy("float64"), params, rng)}
    return {
        "profile_version": PROFILE_VERSION,
        "data_digest": data_digest,
        "rows": len(train),
        "features": features,
        "target": target,
    }
