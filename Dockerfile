# dms-agent: the sidecar image. It does not contain docker-mailserver: in the pod the agent runs
# DMS's `setup` by Kubernetes exec into the mailserver container.
#
#   docker build -t dms-agent:0.1.0 .
#   (releases: .github/workflows/release.yml sets VERSION, REVISION and CREATED)
#
# Runs as uid 10001, with a read-only root filesystem (only /tmp needs to be writable: mount an
# emptyDir there), JSON logs by default (DMS_AGENT_LOGGING__FORMAT=text for a terminal).
#
# The base image is pinned by digest (the multi-arch index of python:3.11-slim-bookworm), so a
# rebuild gets the same bytes; dependencies come from requirements.lock, each with its hashes.
# Updating both is a reviewed change: docs/release.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# The virtualenv is copied whole into the runtime stage: no compiler or pip cache there.
RUN python -m venv /opt/dms-agent
# The locked dependencies first (a layer that survives edits of the agent's code), every file
# checked against its hash; then the agent itself, adding nothing unlocked.
COPY requirements.lock ./
RUN /opt/dms-agent/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY agent ./agent
RUN /opt/dms-agent/bin/pip install --no-cache-dir --no-deps . \
    && /opt/dms-agent/bin/pip uninstall --yes pip \
    && /opt/dms-agent/bin/python -m compileall -q /opt/dms-agent/lib

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/dms-agent/dms-agent
LABEL org.opencontainers.image.title="dms-agent" \
      org.opencontainers.image.description="Event-driven sidecar for docker-mailserver: declarative accounts, aliases, quotas and DKIM; honest health; DNS checks; metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
RUN groupadd --system --gid 10001 dms-agent \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin dms-agent
COPY --from=build /opt/dms-agent /opt/dms-agent
# Bytecode was compiled at build time; a read-only root filesystem cannot take new .pyc files.
ENV PATH=/opt/dms-agent/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DMS_AGENT_LOGGING__FORMAT=json
USER 10001:10001
EXPOSE 9425
ENTRYPOINT ["dms-agent", "run"]
CMD ["--config", "/etc/dms-agent/settings/settings.yaml"]
