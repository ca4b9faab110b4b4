# syntax=docker/dockerfile:1
# Tollgate gateway image: slim Python 3.11, non-root, no secrets inside, data folder as a volume.
#
#   docker build -t tollgate:0.1.0 .
#   docker run -p 8080:8080 -e TOLLGATE_MASTER_KEY=... -e OPENAI_API_KEY=... tollgate:0.1.0
#
# Configuration comes at run time only: environment variables (docs/configuration.md) and, optionally,
# a config file mounted read-only and named by TOLLGATE_CONFIG. See docs/deployment.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: install Tollgate and its dependencies into a virtualenv (all have wheels: no compiler needed) ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/tollgate
COPY pyproject.toml README.md ./
COPY src ./src
# The otel extra: traces go out when OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/observability.md); the vault
# extra: ${vault:...} secret references (docs/configuration.md#secrets); the sso extra: single sign-on for the UI (docs/ui.md).
RUN /opt/tollgate/bin/pip install ".[otel,vault,sso]"

# ---- runtime: the virtualenv on a clean slim base, run as an unprivileged user ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="tollgate" \
      org.opencontainers.image.description="AI gateway: OpenAI- and Anthropic-compatible endpoint with keys, limits, guardrails, caching and routing" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can check it and volumes can be chowned to it.
RUN groupadd --system --gid 10001 tollgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tollgate --no-create-home \
       --shell /usr/sbin/nologin tollgate \
    && mkdir -p /var/lib/tollgate /etc/tollgate \
    && chown 10001:10001 /var/lib/tollgate

COPY --from=build /opt/tollgate /opt/tollgate

# Listen on every interface inside the container (the default, 127.0.0.1, is unreachable from outside it).
# No key, password or provider secret is set here: pass them at run time (env, env file, secrets).
ENV PATH=/opt/tollgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TOLLGATE_HOST=0.0.0.0 \
    TOLLGATE_PORT=8080 \
    TOLLGATE_DATA_DIR=/var/lib/tollgate

# The embedded database, the generated master key (when none is given) and the ledger spool live here.
VOLUME ["/var/lib/tollgate"]
WORKDIR /var/lib/tollgate
USER 10001:10001
EXPOSE 8080

# Liveness with the standard library only (the slim image has no curl): urlopen raises on a refused
# connection or a non-2xx answer, which makes the command exit non-zero.
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('TOLLGATE_PORT', '8080'), timeout=3)"

ENTRYPOINT ["tollgate"]
CMD ["serve"]
