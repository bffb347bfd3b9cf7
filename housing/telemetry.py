"""Usage telemetry of the libraries the project runs, off unless the user turns it on.

MLflow 3 (from 3.2) sends usage data from every process that imports it, and DVC starts an
analytics daemon after each command. On these machines (and many clusters) there is no
internet, and nobody agreed to it: both are off by default in the commands, the images
(docker/*.Dockerfile) and the repository's DVC config (`core.analytics = false`). Turn them
back on with MLFLOW_DISABLE_TELEMETRY=false and `dvc config --local core.analytics true`
(and DVC_NO_ANALYTICS unset): README.md#telemetry.
"""

from __future__ import annotations

import os

# Names and values as the libraries read them (mlflow/telemetry/utils.py is_telemetry_disabled;
# dvc/analytics.py is_enabled: any non-empty value disables).
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}


def disable_telemetry() -> None:
    """Turn the libraries' telemetry off for this process and its children, before mlflow is
    imported; a value the user set (MLFLOW_DISABLE_TELEMETRY=false) wins."""
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)
