"""Inference backends: the model compiled to ONNX (run by onnxruntime), or sklearn itself.

The ONNX graph is built when a version is loaded and is trusted only after it reproduces
sklearn's predictions on the model's input example and a deterministic sample of its valid
domain; otherwise the server falls back to sklearn and says so in its metrics and /health.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

# Largest |onnx - sklearn| accepted, in units of $100,000 (i.e. $10). The graph computes in
# float32; on the training data the difference stays below 1e-5.
ONNX_TOLERANCE = 1e-4
SAMPLE_ROWS = 512
SAMPLE_SEED = 20240601


class Predictor(Protocol):
    """Predicts one float64 value per row of a float64 [N, width] matrix."""

    @property
    def backend(self) -> str: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SklearnPredictor:
    model: Any
    backend: str = "sklearn"

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x), dtype=np.float64).reshape(-1)


@dataclass(frozen=True)
class OnnxPredictor:
    session: Any  # onnxruntime.InferenceSession; run() is thread-safe
    input_name: str
    backend: str = "onnxruntime"

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: x.astype(np.float32)})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)


def build_onnx(model: Any, width: int) -> OnnxPredictor:
    """Convert with skl2onnx and open a single-threaded onnxruntime session."""
    import onnxruntime as ort
    from skl2onnx import to_onnx

    # float32 input: skl2onnx writes tree thresholds as float32 (ai.onnx.ml TreeEnsemble v1).
    graph = to_onnx(model, np.zeros((1, width), dtype=np.float32), target_opset={"": 17})
    options = ort.SessionOptions()
    # Requests already run in parallel; one thread each avoids oversubscribing the cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return OnnxPredictor(session, session.get_inputs()[0].name)


def verification_sample(
    example: np.ndarray, valid_min: np.ndarray, valid_max: np.ndarray
) -> np.ndarray:
    """The input example plus seeded uniform rows over the valid domain, edges included."""
    rng = np.random.default_rng(SAMPLE_SEED)
    uniform = rng.uniform(valid_min, valid_max, size=(SAMPLE_ROWS, len(valid_min)))
    return np.vstack([example, uniform, valid_min, valid_max])


def compile_predictor(
    model: Any, sample: np.ndarray, tolerance: float = ONNX_TOLERANCE
) -> tuple[Predictor, str | None]:
    """The fastest backend that agrees with sklearn on `sample`, and why ONNX was refused."""
    reference = SklearnPredictor(model)
    try:
        candidate = build_onnx(model, sample.shape[1])
        error = float(np.max(np.abs(candidate.predict(sample) - reference.predict(sample))))
    except Exception as exc:  # any converter or runtime failure means: not this backend
        reason = f"ONNX conversion failed: {type(exc).__name__}: {exc}"
        log.warning("%s; serving with sklearn", reason)
        return reference, reason
    if not error <= tolerance:
        reason = f"ONNX differs from sklearn by {error:.3g} > {tolerance:g}"
        log.warning("%s; serving with sklearn", reason)
        return reference, reason
    log.info("ONNX backend verified on %d rows (max abs error %.3g)", len(sample), error)
    return candidate, None
