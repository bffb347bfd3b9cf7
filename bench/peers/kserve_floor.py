"""The floor of KServe's stack: a kserve.Model that parses v1 and answers without a model.

Not a competitor: a diagnostic for bench/serving.py (`--servers ...,kserve-floor`). Whatever
a predictor on KServe's ModelServer does per request costs at least this much CPU; the
difference between a server and this floor is the server's own work. With --hop, the
(empty) predict runs in a two-thread pool via run_in_executor, as the project's server does,
which prices the thread hop.
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kserve import Model, ModelServer, model_server


def _answer(payload: Any) -> dict[str, Any]:
    return {"predictions": [0.0] * len(payload["instances"])}


class FloorModel(Model):
    def __init__(self, name: str, hop: bool) -> None:
        super().__init__(name)
        self.pool = ThreadPoolExecutor(2) if hop else None
        self.ready = True

    async def predict(self, payload: Any, headers: Any = None) -> dict[str, Any]:
        if self.pool is None:
            return _answer(payload)
        return await asyncio.get_running_loop().run_in_executor(self.pool, _answer, payload)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--hop", action="store_true")
    args, _ = parser.parse_known_args()
    ModelServer().start([FloorModel(args.model_name, args.hop)])
