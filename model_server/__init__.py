"""The KServe predictor of the California Housing model: `python -m model_server`.

Modules, one job each: settings (environment), loader (registry -> LoadedModel), backends
(ONNX or sklearn), validation (the model's contract), protocol (v1/v2 in and out), model (the
kserve.Model), watcher (alias polling, hot swap), accounting (metrics + prediction records),
metrics, errors, middleware, routes (operational API), server (wiring). See
docs/model-server.md.
"""
