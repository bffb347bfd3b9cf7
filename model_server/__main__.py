"""`model-server` / `python -m model_server`: serve the registry's model over KServe v1 and v2
until SIGTERM.

Configuration is the environment only (MODEL_SERVER_*, MLFLOW_TRACKING_URI): see settings.py.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings


def main() -> None:
    from model_server.cli import load_settings, parse

    # `python -m model_server` has no script name of its own to show.
    prog = "python -m model_server" if sys.argv[0].endswith("__main__.py") else "model-server"
    parse(sys.argv[1:], prog)  # --help, --version: print and exit before anything starts

    settings = load_settings(prog)
    from housing.telemetry import disable_telemetry

    disable_telemetry()
    # Before numpy/sklearn load OpenMP: one thread per request (1.5-4x faster per row here,
    # and no oversubscription when requests run in parallel).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Rows are fed as arrays in the signature order, which the loader checks against the
    # names the model was fitted with; sklearn would warn on every call.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    # KServe's app uses ORJSONResponse, which FastAPI now deprecates: not ours to change.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    # Inference threads hold the GIL in Python code (checks, records); a 1 ms switch interval
    # (default 5) lets the event loop answer health checks and small requests in between.
    sys.setswitchinterval(0.001)
    # kserve.model_server parses sys.argv when first imported; our options are env only.
    sys.argv = sys.argv[:1]
    from model_server.logs import configure_logging
    from model_server.server import App, limit_native_threads

    configure_logging(settings.log_level, settings.access_log, settings.log_format)
    limit_native_threads()
    App(settings).run()
    # Requests are answered and their records written: skip the interpreter's teardown of
    # mlflow, sklearn and onnxruntime, which takes seconds of a pod's termination grace.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
