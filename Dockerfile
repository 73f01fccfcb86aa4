# syntax=docker/dockerfile:1
# inferwatch: one image for the server (`inferwatch serve`, the default) and the collector
# (`inferwatch collect ...`). Build: docker build -t inferwatch .
# The build context is only what .dockerignore lets through: the package and its metadata.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# gcc builds the compiled OTLP wire decoder (api/ingest/_otlp.c); it stays in this stage.
# Debian's current gcc is what we want, so the versions are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
# A virtual environment is the unit copied to the runtime stage: no compiler, no pip cache,
# no source tree there.
RUN python -m venv /opt/inferwatch \
    && /opt/inferwatch/bin/pip install --no-cache-dir /src

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="inferwatch" \
      org.opencontainers.image.description="Where the money and the milliseconds of your GPU inference go." \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged uid: Kubernetes securityContext (runAsNonRoot) and volume ownership
# can name it. The spool directory exists so that a named volume mounted there starts out
# owned by that uid.
RUN groupadd --system --gid 10001 inferwatch \
    && useradd --system --no-log-init --uid 10001 --gid inferwatch \
        --home-dir /var/lib/inferwatch --create-home --shell /usr/sbin/nologin inferwatch \
    && install -d -o inferwatch -g inferwatch /var/lib/inferwatch/spool
COPY --from=build /opt/inferwatch /opt/inferwatch
ENV PATH=/opt/inferwatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INFERWATCH_DATA_DIR=/var/lib/inferwatch \
    XDG_STATE_HOME=/var/lib/inferwatch/state
WORKDIR /var/lib/inferwatch
USER 10001:10001
# 8000: the server (OTLP/HTTP ingest, API, pages). 4318 and 9401: the collector's span
# receiver and its own /metrics, when the image runs `collect`.
EXPOSE 8000 4318 9401
# The server's health. A collector container overrides this (compose) or ignores it
# (Kubernetes, which uses its probes).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('INFERWATCH_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["inferwatch"]
CMD ["serve", "--host", "0.0.0.0"]
