"""The inference backends side by side on the champion: onnxruntime against compiled trees
(lleaves, GeoFeatures included), one thread, 1-row and 100-row predicts, hot and cold caches,
and what compiling and loading the trees cost.

    python bench/backends.py [--calls 2000]

Fits the LightGBM champion as the training job does (params.yaml's candidate with the
search's result, models/tuned.json) on the training rows of data/raw/cal_housing.data, and
times the held-out test rows. Cold: an 8 MB array is summed between two calls (timed
apart), evicting the caches as a server's other work does. Run at normal priority on a quiet
machine: the times are the point.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from housing.contract import FEATURES, RAW_COLUMNS, TARGET  # noqa: E402
from model_server.backends import build_onnx, verification_sample  # noqa: E402
from model_server.compiled_trees import (  # noqa: E402
    CompiledTreesPredictor,
    geo_trees,
    load_trees,
    verify,
)
from training_job.candidates import build  # noqa: E402
from training_job.features import assign_splits, derive_features, split_buckets  # noqa: E402
from training_job.params import TUNED, load_params  # noqa: E402
from training_job.tune import tuned_hyperparameters  # noqa: E402

EVICT = np.ones(8_000_000 // 8)


def hot(f: Callable[[np.ndarray], object], batches: list[np.ndarray], calls: int) -> float:
    """µs per call, best of 5 loops."""
    best = np.inf
    for _ in range(5):
        started = time.perf_counter()
        for i in range(calls):
            f(batches[i % len(batches)])
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def cold(f: Callable[[np.ndarray], object], batches: list[np.ndarray], calls: int) -> float:
    """µs per call, mean, the caches evicted before each call."""
    total = 0.0
    for i in range(calls):
        EVICT.sum()
        started = time.perf_counter()
        f(batches[i % len(batches)])
        total += time.perf_counter() - started
    return total / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed loop")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    raw = pd.read_csv(REPO / "data/raw/cal_housing.data", header=None, names=list(RAW_COLUMNS))
    frame = derive_features(raw)
    split = assign_splits(
        split_buckets(raw, params.prepare.split_salt),
        params.prepare.test_percent,
        params.prepare.val_percent,
    )
    train, test = frame[split == "train"], frame[split == "test"]
    hyper = {
        **params.train.candidates["lightgbm"],
        **tuned_hyperparameters(REPO / TUNED, "lightgbm"),
    }
    with threadpool_limits(limits=1):
        model = build("lightgbm", params.train.seed, hyper, threads=1)
        model.fit(train[list(FEATURES)], train[TARGET].to_numpy())
        pair = geo_trees(model)
        assert pair is not None, "the champion is not GeoFeatures + LightGBM"
        features, boost = pair
        x = test[list(FEATURES)].to_numpy()
        low, high = train[list(FEATURES)].min().to_numpy(), train[list(FEATURES)].max().to_numpy()
        sample = verification_sample(x[:1], low, high)
        reference = model.predict(sample)

        onnx = build_onnx(model, len(FEATURES))
        with tempfile.TemporaryDirectory(prefix="bench-trees-") as tmp:
            model_file, object_file = Path(tmp) / "model.txt", Path(tmp) / "trees.o"
            model_file.write_text(boost.booster_.model_to_string())
            started = time.perf_counter()
            load_trees(model_file, object_file)
            compile_s = time.perf_counter() - started
            started = time.perf_counter()
            trees = load_trees(model_file, object_file)
            load_s = time.perf_counter() - started
            size = object_file.stat().st_size
        compiled = CompiledTreesPredictor(features, trees, len(FEATURES) + 10, backend="lleaves")
        started = time.perf_counter()
        error = verify(compiled, features, sample, reference)
        verify_s = time.perf_counter() - started

        rows1 = [np.ascontiguousarray(x[i * 7 : i * 7 + 1]) for i in range(64)]
        rows100 = [np.ascontiguousarray(x[i * 100 : (i + 1) * 100]) for i in range(16)]
        print(
            f"champion: {boost.n_estimators} trees, {boost.num_leaves} leaves; "
            f"{len(x)} test rows; one thread"
        )
        print(
            f"compiled trees: compile {compile_s:.1f} s, load from the object file "
            f"{load_s * 1e3:.0f} ms ({size / 1e6:.1f} MB), verification on {len(sample)} rows "
            f"{verify_s * 1e3:.0f} ms, max |compiled - model| {error:.2g}"
        )
        onnx_error = np.max(np.abs(onnx.predict(x) - model.predict(x)))
        trees_error = np.max(np.abs(compiled.predict(x) - model.predict(x)))
        print(
            f"max |backend - model.predict| on the test rows: onnxruntime {onnx_error:.2g}, "
            f"compiled trees {trees_error:.2g}\n"
        )
        print("| µs per predict | 1 row hot | 1 row cold | 100 rows hot | 100 rows cold |")
        print("| --- | --- | --- | --- | --- |")
        # The trees alone, on features computed beforehand (lleaves' own predict).
        geo1 = [features.transform(r).astype(np.float64) for r in rows1]
        geo100 = [features.transform(r).astype(np.float64) for r in rows100]
        runs = (
            ("onnxruntime", onnx.predict, rows1, rows100),
            ("compiled trees + GeoFeatures", compiled.predict, rows1, rows100),
            ("compiled trees alone", lambda a: trees.predict(a, n_jobs=1), geo1, geo100),
        )
        for name, f, one, hundred in runs:
            times = (
                hot(f, one, args.calls),
                cold(f, one, args.calls // 4),
                hot(f, hundred, args.calls // 4),
                cold(f, hundred, args.calls // 8),
            )
            print(f"| {name} | " + " | ".join(f"{t:.1f}" for t in times) + " |")
        transform_1 = hot(features.transform, rows1, args.calls)
        own_1 = hot(lambda r: features.transform_row(r[0].tolist()), rows1, args.calls)
        transform_100 = hot(features.transform, rows100, args.calls // 4)
        print(
            f"\nGeoFeatures alone: 1 row {transform_1:.1f} µs with numpy (transform), "
            f"{own_1:.1f} µs without (transform_row); 100 rows {transform_100:.1f} µs (transform)"
        )


if __name__ == "__main__":
    main()
