# One image for the API, the arq worker and migrations:
#   API (default):  docker run IMAGE
#   worker:         docker run IMAGE python -m service worker
#   migrations:     docker run IMAGE alembic upgrade head

# --- build: compilers live only in this stage -------------------------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# asyncpg, uvloop and hiredis ship wheels for common platforms; the compilers cover the rest.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential=12.9 \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /venv
WORKDIR /src
# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
COPY service ./service
RUN /venv/bin/pip install --no-cache-dir .

# --- runtime: slim base, the virtualenv, no compilers, no root --------------------------
FROM python:3.11-slim-bookworm
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENV=production \
    PORT=8000
RUN groupadd --system --gid 10001 newsdesk \
 && useradd --system --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin newsdesk
COPY --from=build /venv /venv
WORKDIR /app
COPY alembic.ini hypercorn.toml worker.py ./
COPY alembic ./alembic
USER 10001:10001
EXPOSE 8000
# Liveness only: /healthz does no I/O, so a slow database never marks the container unhealthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=2)"]
# Hypercorn with hypercorn.toml; BIND/PORT and WEB_CONCURRENCY (default: CPU count) apply.
CMD ["python", "-m", "service", "serve"]
