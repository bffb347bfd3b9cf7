"""A minimal KServe custom predictor: the model from the registry, sklearn's predict, v1.

What a team writes on day one with KServe's documented pattern (a kserve.Model subclass and
KServe's own ModelServer and argument parser, defaults kept), the baseline that
bench/serving.py measures the project's server against. No validation, no prediction log,
no metrics of its own.

    MLFLOW_TRACKING_URI=sqlite:///DIR/mlflow.db python bench/peers/kserve_minimal.py \
        --model_name california-housing --http_port 8090 --enable_grpc false
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import mlflow.sklearn
import numpy as np
from kserve import Model, ModelServer, model_server


class SklearnModel(Model):
    def __init__(self, name: str, model_uri: str) -> None:
        super().__init__(name)
        self.model_uri = model_uri
        self.model: Any = None

    def load(self) -> bool:
        self.model = mlflow.sklearn.load_model(self.model_uri)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: Any = None) -> dict[str, Any]:
        x = np.asarray(payload["instances"], dtype=np.float64)
        return {"predictions": self.model.predict(x).tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_uri", default="models:/california-housing@champion")
    args, _ = parser.parse_known_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    model = SklearnModel(args.model_name, args.model_uri)
    model.load()
    ModelServer().start([model])
