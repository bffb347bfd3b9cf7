# The training image: `python -m training_job pipeline|retrain` (the Job and the CronJob) and
# `mlflow server` (the chart's tracking server). The train extra from uv.lock, DVC and git,
# the pipeline definition and the embedded DVC remote. Multi-stage; uv stays in the builder.
#
#   docker build -f docker/training-job.Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) \
#     -t california-housing/training-job .
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ARG UV_VERSION=0.13.8
COPY docker/certs/ /usr/local/share/ca-certificates/extra/
RUN update-ca-certificates
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NATIVE_TLS=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN /opt/uv/bin/uv sync --frozen --no-dev --extra train --no-install-project --python python3
# The job's code and what it shares with the server (housing/: the contract, the policy, the
# serving database); model_server/ is not in this image (tests/test_layering.py keeps the job
# from importing it).
COPY housing/ housing/
COPY training_job/ training_job/
RUN /opt/uv/bin/uv sync --frozen --no-dev --extra train --no-editable --python python3 \
    # The libraries' own test suites (about 90 MB, e.g. pandas/tests) are never imported.
    && find /opt/venv/lib/python3*/site-packages -mindepth 2 -type d -name tests -prune \
       -exec rm -rf {} +

FROM ${BASE_IMAGE} AS runtime
ARG GIT_COMMIT=unknown
COPY --from=builder /usr/local/share/ca-certificates/extra/ /usr/local/share/ca-certificates/extra/
# git: DVC works in a git workspace (the job materialises one under TRAINING_WORKSPACE).
# libgomp1: LightGBM's OpenMP runtime (its wheel links it, the slim base lacks it).
RUN update-ca-certificates \
    && apt-get update \
    && apt-get install -y --no-install-recommends git libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
# The pipeline: its definition, the DVC metadata and the embedded remote (the default when
# TRAINING_DVC_REMOTE is unset). Read-only at run time; the job copies what it needs.
WORKDIR /app
COPY dvc.yaml dvc.lock params.yaml .dvcignore ./
COPY .dvc/config .dvc/config
COPY data/raw/cal_housing.data.dvc data/raw/.gitignore data/raw/
# The gate's frozen reference set (its .dvc file; the data comes from dvc-remote/).
COPY data/reference/reference.data.dvc data/reference/reference.json data/reference/.gitignore data/reference/
COPY dvc-remote/ dvc-remote/
COPY housing/ housing/
COPY training_job/ training_job/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    GIT_CONFIG_NOSYSTEM=1 \
    TRAINING_GIT_COMMIT=${GIT_COMMIT}
# Telemetry off (housing/telemetry.py; README.md#telemetry says how to turn it back on).
ENV MLFLOW_DISABLE_TELEMETRY=true \
    DVC_NO_ANALYTICS=1
USER 10001:10001
EXPOSE 5000
LABEL org.opencontainers.image.title="california-housing training job" \
      org.opencontainers.image.description="Training pipeline, retraining CronJob and MLflow server" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
CMD ["python", "-m", "training_job", "--help"]
