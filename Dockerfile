# dms-agent: the sidecar image. It does not contain docker-mailserver: in the pod the agent runs
# DMS's `setup` by Kubernetes exec into the mailserver container.
#
#   docker build -t dms-agent:0.1.0 .
#
# Runs as uid 10001, with a read-only root filesystem (only /tmp needs to be writable: mount an
# emptyDir there), JSON logs by default (DMS_AGENT_LOGGING__FORMAT=text for a terminal).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# The virtualenv is copied whole into the runtime stage: no compiler or pip cache there.
RUN python -m venv /opt/dms-agent
COPY pyproject.toml README.md ./
COPY agent ./agent
RUN /opt/dms-agent/bin/pip install --no-cache-dir . \
    && /opt/dms-agent/bin/python -m compileall -q /opt/dms-agent/lib

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="dms-agent" \
      org.opencontainers.image.description="Event-driven sidecar for docker-mailserver: declarative accounts, aliases, quotas and DKIM; honest health; DNS checks; metrics" \
      org.opencontainers.image.version="${VERSION}" \
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
