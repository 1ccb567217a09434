# One image for the API, the arq worker and migrations:
#   API (default):  docker run IMAGE
#   worker:         docker run IMAGE python -m service worker
#   migrations:     docker run IMAGE alembic upgrade head
# (each under tini, the entry point: docker run's arguments replace only the command)
# Everything it installs is pinned, with hashes, in requirements/image.txt (pip-compile from
# pyproject.toml; the command is at the top of that file).
# `make image` builds it (service/cli/image.py): on this base when it can be pulled, else on a
# stand-in built from Debian's packages (Python 3.11 at the same paths), said so when it does.
ARG BASE=python:3.11-slim-bookworm

# --- build: compilers live only in this stage -------------------------------------------
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Every compiled dependency ships wheels for common platforms; the compilers cover the rest.
# tini (its static build) is copied into the runtime stage below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential=12.9 tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /venv
WORKDIR /src
# Dependencies first, from the lock file alone: a code change (or an edit of pyproject.toml's
# tool sections) leaves this layer cached. --require-hashes refuses anything unpinned.
COPY requirements/image.txt requirements/image.txt
RUN /venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements/image.txt
# Then the package itself, without dependencies, built by the pinned setuptools just installed.
COPY pyproject.toml README.md ./
COPY service ./service
RUN /venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation .

# --- runtime: slim base, the virtualenv, no compilers, no root --------------------------
FROM ${BASE}
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENV=production \
    PORT=8000
RUN groupadd --system --gid 10001 newsdesk \
 && useradd --system --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin newsdesk
COPY --from=build /venv /venv
COPY --from=build /usr/bin/tini-static /usr/bin/tini
WORKDIR /app
COPY alembic.ini hypercorn.toml worker.py ./
COPY alembic ./alembic
USER 10001:10001
EXPOSE 8000
# One check for every role (service/cli/healthcheck.py): the API's /healthz (no I/O, so a slow
# database never marks it unhealthy), the worker's arq health check in Redis, nothing for a
# migration. The role is read from the container's command; `--role` overrides it.
# 10 s: the worker's check starts Python and imports the worker's settings (about 1 s idle,
# past 5 s on a loaded machine in tests/image/, which then saw it unhealthy).
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
  CMD ["python", "-m", "service", "healthcheck"]
# tini is PID 1 in every role: it passes signals on and reaps orphans. The kernel drops a signal
# sent to PID 1 that has no handler: a Python process that is PID 1 ignores a SIGTERM arriving
# while it is still starting, before its own handler is set, and `docker stop` then waits the
# whole grace period and kills it (seen in tests/image/ with a worker stopped at start-up).
# Orchestrators give the command as arguments (Kubernetes `args:`, compose `command:`), so
# the entry point stays.
ENTRYPOINT ["/usr/bin/tini", "--"]
# Hypercorn with hypercorn.toml; BIND/PORT and WEB_CONCURRENCY (default: the CPU quota) apply.
CMD ["python", "-m", "service", "serve"]
