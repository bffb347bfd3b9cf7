# The model server image: `python -m model_server` (KServe custom predictor), the serve extra
# only, installed from uv.lock. Multi-stage: uv and the build tools stay in the builder.
#
#   docker build -f docker/model-server.Dockerfile -t california-housing/model-server .
#   (docker/build-local.sh builds it here from a locally made base image)
#
# The base image is a build argument: the public Python image by default; any Debian-like
# image with Python 3.11 (python3, venv) and ca-certificates works.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ARG UV_VERSION=0.13.8
# Extra CA certificates (docker/certs/*.crt, empty in git) for a TLS-intercepting proxy.
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
# Dependencies first (a layer that changes only with the lock file), then the package itself.
COPY pyproject.toml uv.lock README.md ./
RUN /opt/uv/bin/uv sync --frozen --no-dev --extra serve --no-install-project --python python3
# The server's code and what it shares with the job (housing/: the contract, the policy, the
# serving database); training_job/ is not in this image (tests/test_layering.py keeps the
# server from importing it).
COPY housing/ housing/
COPY model_server/ model_server/
RUN /opt/uv/bin/uv sync --frozen --no-dev --extra serve --no-editable --python python3 \
    # The libraries' own test suites (about 90 MB, e.g. pandas/tests) are never imported.
    && find /opt/venv/lib/python3*/site-packages -mindepth 2 -type d -name tests -prune \
       -exec rm -rf {} +

FROM ${BASE_IMAGE} AS runtime
ARG GIT_COMMIT=unknown
COPY --from=builder /usr/local/share/ca-certificates/extra/ /usr/local/share/ca-certificates/extra/
# libgomp1: LightGBM's OpenMP runtime (the champion's pipeline unpickles with LightGBM).
RUN update-ca-certificates \
    && apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
# The root filesystem is read-only in the cluster: caches and HOME go to /tmp (an emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib
# Telemetry off (housing/telemetry.py; README.md#telemetry says how to turn it back on).
ENV MLFLOW_DISABLE_TELEMETRY=true \
    DVC_NO_ANALYTICS=1
WORKDIR /app
USER 10001:10001
EXPOSE 8080 8081
LABEL org.opencontainers.image.title="california-housing model server" \
      org.opencontainers.image.description="KServe custom predictor of the California Housing model" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
CMD ["python", "-m", "model_server"]
