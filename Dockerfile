# Soest MQTT Gateway: container image.
#
#   docker build -t soest-mqtt-gateway .
#   docker run -d --name soest-gateway -e GATEWAY_MQTT_HOST=192.168.1.10 \
#       -v soest-gateway-data:/data -p 127.0.0.1:9142:9142 soest-mqtt-gateway
#
# Your own config: mount it over the default, e.g. -v "$PWD/topics.yaml:/config/topics.yaml:ro".
# Everything else is configured with GATEWAY_* variables (README.md, docs/deployment.md).
# tests/test_packaging.py runs the same build steps as a plain install, without Docker;
# tests/container/ builds this image (scripts/build-image: docker, or podman where no daemon runs)
# and runs it against a real Mosquitto (docs/container.md).

# ---------------------------------------------------------------- builder: wheel -> /opt/venv
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY requirements.lock pyproject.toml README.md topics.yaml ./
COPY gateway/ gateway/
COPY adapters/ adapters/

# The venv has no pip or setuptools of its own: the builder's pip installs into it. The
# dependencies are exactly requirements.lock (pinned, every file hash-checked, wheels only: no
# compiler, no sdist that runs code), then the gateway's own wheel without dependencies. The last
# two commands fail the build if the console script is broken or the default config does not
# validate with the installed code.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --require-hashes --only-binary=:all: \
        -r requirements.lock \
 && python -m pip --python /opt/venv/bin/python install --no-deps /wheels/*.whl \
 && /opt/venv/bin/soest-gateway --version \
 && /opt/venv/bin/soest-gateway check-config --config topics.yaml

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim

# A fixed, unprivileged uid/gid (10001) so that file ownership on volumes is predictable. /data
# is the only place it may write; /app (its home and working directory) stays root's, as an
# engine would otherwise create the WORKDIR owned by the user at run time.
RUN groupadd --gid 10001 gateway \
 && useradd --uid 10001 --gid gateway --no-log-init --no-create-home --home-dir /app \
            --shell /usr/sbin/nologin gateway \
 && mkdir -p /app /config /data \
 && chown gateway:gateway /data

COPY --from=builder /opt/venv /opt/venv
COPY topics.yaml /config/topics.yaml

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_CONFIG=/config/topics.yaml \
    GATEWAY_DATA_DIR=/data \
    GATEWAY_HTTP_HOST=0.0.0.0 \
    GATEWAY_HTTP_PORT=9142

WORKDIR /app
USER 10001:10001

VOLUME ["/config", "/data"]
EXPOSE 9142

# Liveness over the metrics port, without curl: the image has Python anyway. Needs the HTTP
# endpoint (GATEWAY_HTTP_PORT not 'off', GATEWAY_HTTP_HOST 0.0.0.0 or 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_HTTP_PORT', '9142'), timeout=4)"]

# The gateway is PID 1: it handles SIGTERM itself (publishes 'offline', saves /data, exits 0).
ENTRYPOINT ["soest-gateway"]
CMD ["run"]

# Last, so that a new version or revision rebuilds one metadata layer, not the stage.
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="Soest MQTT Gateway" \
      org.opencontainers.image.description="Open city data (DWD weather, sun, warnings, air quality, ...) to MQTT with Home Assistant discovery" \
      org.opencontainers.image.source="https://github.com/soest-mqtt-gateway/soest-mqtt-gateway" \
      org.opencontainers.image.url="https://github.com/soest-mqtt-gateway/soest-mqtt-gateway" \
      org.opencontainers.image.documentation="https://github.com/soest-mqtt-gateway/soest-mqtt-gateway/blob/main/docs/deployment.md" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
