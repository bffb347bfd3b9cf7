"""Compiled trees: a LightGBM champion's booster compiled to machine code by lleaves.

The server becomes ready on its verified ONNX backend; then, for a GeoPipeline (GeoFeatures
followed by LGBMRegressor), a niced child process (`python -m model_server.compiled_trees`)
compiles the booster with LLVM into a cache folder keyed by the model text, the lleaves and
llvmlite versions and the CPU, so that a restart or a replica sharing the folder loads the
object instead of compiling again (~20 s for the 293-tree champion). The child also loads the
object and predicts the verification sample: a corrupt object file crashes the child, never the
server. The server then loads the object itself, verifies the compiled predictor (GeoFeatures
and the trees, batch and one-row paths) against the model's own predict on the same sample, and
only then swaps the backend of the version being served (HousingModel.upgrade). Any failure
leaves ONNX serving, with the reason in the log and /health (`compiled_refused`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the child process imports this module: keep it light
    from model_server.loader import LoadedModel

log = logging.getLogger(__name__)

BACKEND = "lleaves"
# Largest |compiled - model.predict| accepted, in $100,000. Both compute in float64 from the
# same float32 features; measured 1.2e-14 (the trees are summed in another order).
COMPILED_TOLERANCE = 1e-9
# The compile must not take CPU from requests.
CHILD_NICENESS = 10
# lleaves.Model.compile's options; part of the cache key.
COMPILE_OPTIONS: dict[str, Any] = {"raw_score": False, "fblocksize": 34, "fcodemodel": "large"}
# Written by the child before it loads a cached object: if it dies then, the object is bad.
LOADING_CACHED = "loading-cached"
PR_SET_PDEATHSIG = 1
# Up to this many rows, predict builds the features row by row in Python (~6 us a row) and
# calls the trees once; more go through GeoFeatures.transform and lleaves' predict, whose
# numpy costs ~25 us a call (measured: 1 row 15 against 28 us, 4 rows 35 against 32).
ROWS_MAX = 3


class RefusedError(Exception):
    """Why the compiled trees are not used (the server keeps serving ONNX)."""


# -- the model: is it one, its booster, its features ---------------------------------------


def geo_trees(model: Any) -> tuple[Any, Any] | None:
    """(GeoFeatures, LGBMRegressor) of a fitted GeoPipeline, or None for any other model."""
    from sklearn.pipeline import Pipeline

    from housing.estimator import GeoFeatures

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    features, boost = model.steps[0][1], model.steps[1][1]
    if not isinstance(features, GeoFeatures) or type(boost).__name__ != "LGBMRegressor":
        return None
    return features, boost


# -- the predictor --------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledTreesPredictor:
    """GeoFeatures, then the compiled trees (whose C entry point runs without the GIL)."""

    features: Any  # fitted GeoFeatures
    trees: Any  # lleaves.Model, compiled
    width: int
    backend: str = BACKEND

    def predict(self, x: np.ndarray) -> np.ndarray:
        if len(x) <= ROWS_MAX:
            return self.predict_rows(x.tolist())
        features = self.features.transform(x)
        return np.asarray(self.trees.predict(features, n_jobs=1), dtype=np.float64)

    def predict_rows(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        # lleaves' entry point with ctypes arrays: its predict() and GeoFeatures.transform
        # cost ~25 us of numpy a call (ROWS_MAX).
        count = len(rows)
        transform_row = self.features.transform_row
        values = [v for row in rows for v in transform_row(row)]
        data = (ctypes.c_double * len(values))(*values)
        out = (ctypes.c_double * count)()
        self.trees._c_entry_func(data, out, 0, count)
        return np.array(out[:count])


def cache_key(model_text: str) -> str:
    """What the object file depends on: the trees, the compiler, its options and the CPU."""
    from importlib.metadata import version

    import llvmlite
    import llvmlite.binding as llvm

    llvm.initialize()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot detect them on some hosts; lleaves then uses none
        features = ""
    parts = [
        hashlib.sha256(model_text.encode()).hexdigest(),
        f"lleaves {version('lleaves')}",
        f"llvmlite {llvmlite.__version__}",
        json.dumps(COMPILE_OPTIONS, sort_keys=True),
        llvm.get_process_triple(),
        llvm.get_host_cpu_name(),
        features,
        platform.machine(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]


def load_trees(model_file: Path, object_file: Path) -> Any:
    """A compiled lleaves.Model from an object file (lleaves skips compiling when it exists)."""
    import lleaves

    trees = lleaves.Model(model_file=str(model_file))
    trees.compile(cache=str(object_file), **COMPILE_OPTIONS)
    return trees


# -- the child process ----------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Killed if the server dies without stopping us (Linux only; elsewhere best effort)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl
        os._exit(1)


def child_main(argv: list[str] | None = None) -> int:
    """Compile (or load from the cache), predict the sample, write the result. Run as
    `python -m model_server.compiled_trees`, by CompiledTrees only."""
    parser = argparse.ArgumentParser(prog="python -m model_server.compiled_trees")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--object", type=Path, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    os.nice(CHILD_NICENESS)
    # LLVM peaks at ~760 MB compiling the 293-tree champion: past the pod's memory limit, the
    # kernel is to kill this process, not the server (raising one's own score needs no right).
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
    work: Path = args.work
    target: Path = args.object
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # One compile per cache entry at a time, across processes (replicas, test servers); the
    # others wait here without using the CPU, then load what it wrote.
    with Path(f"{target}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waited = time.perf_counter() - started
        compiled = not target.exists()
        if compiled:
            for stale in target.parent.glob(f"{target.name}.tmp-*"):  # a killed compile's
                stale.unlink(missing_ok=True)
            partial = target.with_name(f"{target.name}.tmp-{os.getpid()}")
            trees = load_trees(work / "model.txt", partial)
            partial.replace(target)  # whole or absent: never a half-written object
        else:
            (work / "phase").write_text(LOADING_CACHED)
            trees = load_trees(work / "model.txt", target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
    sample = np.load(work / "features.npy")
    np.save(work / "predictions.npy", trees.predict(sample, n_jobs=1))
    result = {
        "compiled": compiled,
        "sha256": digest,
        "waited_seconds": round(waited, 3),
        "seconds": round(time.perf_counter() - started - waited, 3),
    }
    (work / "result.json").write_text(json.dumps(result))
    return 0


# -- the server side ------------------------------------------------------------------------


class _Job:
    """One version's compile: its child process, cancelled when the version is replaced."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.cancelled = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start_child(self, command: list[str], log_file: Path) -> subprocess.Popen[bytes]:
        with self._lock:
            if self.cancelled.is_set():
                raise RefusedError("cancelled")
            with log_file.open("wb") as out:
                self.process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                )
            return self.process

    def cancel(self) -> None:
        with self._lock:
            self.cancelled.set()
            if self.process is not None and self.process.poll() is None:
                self.process.kill()


class CompiledTrees:
    """Publishes versions for the champion's watcher, then compiles, verifies and swaps."""

    def __init__(
        self,
        publish: Callable[[LoadedModel], None],
        upgrade: Callable[[LoadedModel, LoadedModel], bool],
        *,
        enabled: bool,
        cache_dir: Path,
    ) -> None:
        self._publish = publish
        self._upgrade = upgrade
        self._enabled = enabled
        self._cache_dir = cache_dir
        self._job: _Job | None = None
        self._lock = threading.Lock()
        self._stopping = False

    def publish(self, loaded: LoadedModel) -> None:
        """Serve `loaded` (ONNX) at once; compile its trees in the background if they apply."""
        reason = self._not_applicable(loaded)
        if reason is not None:
            loaded = replace(loaded, compiled_refused=reason)
        self._publish(loaded)
        with self._lock:
            if self._job is not None:
                self._job.cancel()  # that version is no longer served
                self._job = None
            if reason is not None or self._stopping:
                return
            job = _Job(loaded)
            job.thread = threading.Thread(
                target=self._run, args=(job,), name="compiled-trees", daemon=True
            )
            self._job = job
        job.thread.start()

    def halt(self) -> None:
        """Kill the compile in progress, swap nothing any more; returns at once."""
        with self._lock:
            self._stopping = True
            job = self._job
        if job is not None:
            job.cancel()

    def stop(self, timeout: float = 10.0) -> None:
        self.halt()
        job = self._job
        if job is not None and job.thread is not None:
            job.thread.join(timeout)

    @property
    def child_pid(self) -> int | None:
        job = self._job
        process = None if job is None else job.process
        return None if process is None else process.pid

    def _not_applicable(self, loaded: LoadedModel) -> str | None:
        if not self._enabled:
            return "turned off (MODEL_SERVER_COMPILED_TREES=false)"
        if geo_trees(loaded.model) is None:
            return "not a LightGBM model (GeoFeatures then LGBMRegressor)"
        if loaded.sample is None:
            return "no verification sample"
        return None

    def _run(self, job: _Job) -> None:
        loaded = job.loaded
        started = time.perf_counter()
        try:
            predictor, note = self._build(job)
            upgraded = replace(loaded, predictor=predictor, compiled_refused=None)
        except Exception as exc:
            if job.cancelled.is_set():
                log.info("compiled trees of version %s: stopped", loaded.version)
                return
            reason = str(exc) if isinstance(exc, RefusedError) else f"{type(exc).__name__}: {exc}"
            log.warning(
                "compiled trees refused for version %s: %s; serving with %s",
                loaded.version,
                reason,
                loaded.backend,
            )
            upgraded = replace(loaded, compiled_refused=reason)
            note = None
        with self._lock:  # halt() and a new version wait for the swap, or prevent it
            if job.cancelled.is_set() or self._stopping:
                return
            swapped = self._upgrade(loaded, upgraded)
        if swapped and note is not None:
            log.info(
                "version %s now served by compiled trees (%s; %.1fs after publication)",
                loaded.version,
                note,
                time.perf_counter() - started,
            )

    def _build(self, job: _Job) -> tuple[CompiledTreesPredictor, str]:
        loaded = job.loaded
        pair = geo_trees(loaded.model)
        assert pair is not None and loaded.sample is not None  # _not_applicable checked
        features, boost = pair
        sample = loaded.sample
        reference = np.asarray(loaded.model.predict(sample), dtype=np.float64)
        model_text = boost.booster_.model_to_string()
        target = self._cache_dir.resolve() / f"{cache_key(model_text)}.o"
        with tempfile.TemporaryDirectory(prefix="compiled-trees-") as tmp:
            work = Path(tmp)
            (work / "model.txt").write_text(model_text)
            geo = features.transform(sample)
            np.save(work / "features.npy", geo.astype(np.float64))
            result = self._compile_in_child(job, work, target)
            child_error = _max_error(np.load(work / "predictions.npy"), reference)
            if not child_error <= COMPILED_TOLERANCE:
                _set_aside(target, result["sha256"])
                raise RefusedError(
                    f"the compiled trees ({target.name}) differ from the model by "
                    f"{child_error:.3g} > {COMPILED_TOLERANCE:g}"
                )
            # Load the very bytes the child verified, from a private copy: the cache file
            # may be replaced meanwhile.
            data = target.read_bytes()
            if hashlib.sha256(data).hexdigest() != result["sha256"]:
                raise RefusedError(f"{target} changed after the compile child loaded it")
            private = work / "trees.o"
            private.write_bytes(data)
            trees = load_trees(work / "model.txt", private)
        predictor = CompiledTreesPredictor(features, trees, geo.shape[1], backend=BACKEND)
        error = verify(predictor, features, sample, reference)
        how = "compiled" if result["compiled"] else "loaded from the cache"
        return predictor, (
            f"{how} in {result['seconds']:.1f}s, verified on {len(sample)} rows, "
            f"max abs error {error:.3g}"
        )

    def _compile_in_child(self, job: _Job, work: Path, target: Path) -> dict[str, Any]:
        command = [
            sys.executable,
            "-m",
            "model_server.compiled_trees",
            "--work",
            str(work),
            "--object",
            str(target),
            "--parent",
            str(os.getpid()),
        ]
        output = work / "child.log"
        process = job.start_child(command, output)
        log.info("compiling the trees of version %s (child %d)", job.loaded.version, process.pid)
        code = process.wait()
        if job.cancelled.is_set():
            raise RefusedError("cancelled")
        result_file = work / "result.json"
        if code != 0 or not result_file.exists():
            tail = output.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
            how += f": {tail[0][:300]}" if tail[0] else ""
            phase = work / "phase"
            if phase.exists() and phase.read_text() == LOADING_CACHED:
                _set_aside(target, None)
                raise RefusedError(
                    f"the cached object {target.name} failed to load in the compile child "
                    f"({how}); set aside, the next load compiles again"
                )
            raise RefusedError(f"the compile child failed ({how})")
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result


def _max_error(predictions: np.ndarray, reference: np.ndarray) -> float:
    if predictions.shape != reference.shape:
        return math.inf
    return float(np.max(np.abs(predictions - reference)))


def _set_aside(target: Path, sha256: str | None) -> None:
    """Rename a refused object (kept for a post-mortem) so that the next load compiles anew."""
    try:
        if sha256 is not None and hashlib.sha256(target.read_bytes()).hexdigest() != sha256:
            return  # already replaced by someone else
        target.replace(target.with_name(f"{target.name}.refused-{int(time.time())}"))
    except OSError as exc:
        log.warning("could not set aside %s: %s", target, exc)


def verify(
    predictor: CompiledTreesPredictor, features: Any, sample: np.ndarray, reference: np.ndarray
) -> float:
    """Max |compiled - model.predict| over `sample`, as one batch and in small batches of every
    size up to ROWS_MAX; RefusedError if the one-row features are not bit-identical to
    GeoFeatures.transform or an error is too large."""
    expected = features.transform(sample).view(np.uint32)
    for i, row in enumerate(sample.tolist()):
        own = np.asarray(features.transform_row(row), dtype=np.float32).view(np.uint32)
        if not np.array_equal(own, expected[i]):
            raise RefusedError(f"one-row GeoFeatures differ from GeoFeatures.transform on row {i}")
    batch = _max_error(predictor.predict(sample), reference)
    chunks, start, size = [], 0, 1  # the rows path: chunks of 1, 2, ..., ROWS_MAX, 1, ...
    while start < len(sample):
        chunks.append(sample[start : start + size])
        start, size = start + size, size % ROWS_MAX + 1
    rows = _max_error(np.concatenate([predictor.predict(c) for c in chunks]), reference)
    error = max(batch, rows)
    if not error <= COMPILED_TOLERANCE:
        raise RefusedError(
            f"the compiled trees differ from the model by {error:.3g} > {COMPILED_TOLERANCE:g}"
        )
    return error


if __name__ == "__main__":
    sys.exit(child_main())
