# syntax=docker/dockerfile:1
# Charter's image: `charter serve` (the API) by default; `charter worker` and `charter migrate`
# are the same image with another command (compose.yaml runs all three). README "Container".
#
# BASE is any Debian-like image with Python 3.11+ and `python3 -m venv` (python3-venv).
# The default is the official slim image; where no registry is reachable, build a base from
# Debian's packages and pass it instead (README "Container"):
#   mmdebstrap --variant=minbase --include=python3,python3-venv,libmagic1,ca-certificates \
#       bookworm base.tar http://deb.debian.org/debian
#   buildah import … / podman import base.tar localhost/charter-base:bookworm
#   buildah bud --build-arg BASE=localhost/charter-base:bookworm -t charter .
ARG BASE=python:3.11-slim-bookworm

# --- builder: every wheel the service needs, its own included, built from pyproject.toml ----
FROM ${BASE} AS builder
# pip reads its options from the environment: a build behind a mirror passes PIP_INDEX_URL;
# behind a TLS-inspecting proxy, mount its CA bundle over PIP_CERT's file for the build
# (`buildah bud -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro`).
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/build && /opt/build/bin/pip install --no-cache-dir "pip>=25" "setuptools>=70.1" "wheel>=0.43"
COPY pyproject.toml README.md alembic.ini ./
COPY server/ server/
COPY handlers/ handlers/
COPY services/ services/
COPY persistence/ persistence/
COPY adapters/ adapters/
COPY jobs/ jobs/
RUN /opt/build/bin/pip wheel --no-cache-dir --wheel-dir /wheels .
COPY openapi/ /files/openapi/
COPY migrations/ /files/migrations/
RUN cp alembic.ini /files/alembic.ini

# --- runtime: the wheels in a virtual environment, run by an unprivileged user --------------
FROM ${BASE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/charter/bin:$PATH \
    VAR_DIR=/var/lib/charter \
    LOG_FORMAT=json
# libmagic1: python-magic sniffs uploads' types with it (the Debian-built base already has it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1=1:5.44-3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 charter \
    && useradd --system --uid 10001 --gid charter --home-dir /var/lib/charter --shell /usr/sbin/nologin charter \
    && install -d -o charter -g charter -m 0750 /var/lib/charter
COPY --from=builder /wheels /tmp/wheels
# Only the wheels, no index: what runs is exactly what the builder built.
# The contract, the migrations and alembic.ini go beside the installed packages, where
# server/contract.py (CONTRACT_DIR) and server/cli.py (PROJECT_ROOT) look for them.
COPY --from=builder /files /tmp/files
RUN python3 -m venv /opt/charter \
    && /opt/charter/bin/pip install --no-cache-dir --no-index --find-links=/tmp/wheels charter \
    && cp -r /tmp/files/. "$(/opt/charter/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && rm -rf /tmp/wheels /tmp/files
USER 10001:10001
WORKDIR /var/lib/charter
VOLUME ["/var/lib/charter"]
EXPOSE 8000
# The liveness probe (openapi/paths/health.yaml#/live): it checks no dependency.
# A worker or migrate container has no HTTP server: compose.yaml turns this off for them.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health/live', timeout=2)"]
ENTRYPOINT ["charter"]
# In a container the server must listen on every interface. Alternatives:
#   docker run IMAGE worker --threads 4      (the job worker)
#   docker run IMAGE migrate                 (apply the migrations, then exit)
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
