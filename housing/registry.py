"""Names in the MLflow model registry that the job writes and the server (and the job) read.

The registered model's name is configuration (params.yaml `register.model_name`, the server's
MODEL_SERVER_MODEL_URI); MODEL_NAME is only its default.
"""

from __future__ import annotations

MODEL_NAME = "california-housing"

# Aliases, never stages: @champion is served, @challenger is shadowed or canaried.
CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES: tuple[str, ...] = (CHAMPION, CHALLENGER)

# Tags of a registered version (and of the run it came from).
DATA_DIGEST_TAG = "data_digest"
"""The DVC md5 of the raw data the version was trained on."""
CANDIDATE_TAG = "candidate"
"""Which candidate (linear, tree, ...) the version is."""
GIT_COMMIT_TAG = "mlflow.source.git.commit"


def test_metric_tag(metric: str) -> str:
    """The version tag holding a held-out test metric: test_r2, test_rmse, test_mae."""
    return f"test_{metric}"


TEST_R2_TAG = test_metric_tag("r2")
