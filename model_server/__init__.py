"""The KServe predictor of the California Housing model: `python -m model_server`.

Modules, one job each: settings (environment), loader (registry -> LoadedModel), backends
(ONNX or sklearn), compiled_trees (a LightGBM champion compiled by lleaves in a child process,
verified, swapped in over ONNX), validation (the model's contract), protocol (v1/v2 in and
out), model (the kserve.Model: champion, challenger in shadow or canary), watcher (alias
polling, hot swap), accounting (metrics + prediction records), signals (drift, live error,
retraining gauges, off the request path), drift (PSI and KS, shared with the training job),
metrics, errors, middleware, routes (operational API), retrain_routes (retraining API),
launchers (local process or Kubernetes Job), server (wiring). See docs/model-server.md.
"""
