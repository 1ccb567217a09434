# Newsdesk. The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test-deps run cluster dev test image image-test lint bench bench-quick bench-serving bench-pagination bench-cache bench-views bench-metrics bench-profile bench-dbpath bench-mixed bench-deps faults abuse clean

# Create the virtual environment and install the project (again when pyproject.toml or the lock
# changes): the dev extra's dependencies exactly as pinned, with hashes, in requirements/dev.txt
# (pip-compile from pyproject.toml; the command is at the top of that file, and
# tests/test_dev_lock.py fails when the two drift apart), then the project itself, without
# dependencies, built by the pinned setuptools.
$(STAMP): pyproject.toml requirements/dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Newsdesk needs Python 3.11 or newer as '$(PYTHON)'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

# API on 127.0.0.1:$${PORT:-8000} plus one arq worker; embedded PostgreSQL and Redis in .data/
# unless DATABASE_URL / REDIS_URL are set. Ctrl-C stops everything.
run: $(STAMP)
	exec $(BIN)/python -m service run

# The scalability guide's architecture on this machine: nginx on 127.0.0.1:8080 in front of 3
# API instances, Redis under Sentinel (master, replica, 3 Sentinels), PostgreSQL primary and
# streaming replica, a worker process per role; all embedded, in .data/cluster. It prints what
# runs where; Ctrl-C stops everything in reverse order. ARGS="--instances 5", "--check", ...;
# ARGS="--image newsdesk:local" runs the instances, workers and migration from the image.
cluster: $(STAMP)
	exec $(BIN)/python -m service cluster $(ARGS)

# The same stack with debug logging (text), restarting the API and the worker when a Python file
# under service/ (or a directory in RELOAD_DIRS) changes.
dev: $(STAMP)
	exec $(BIN)/python -m service dev

# Server binaries some tests run for real (nginx -t on the shipped config, PgBouncer in front of
# PostgreSQL, a headless /usr/bin/chromium for the reset page, promtool on the Prometheus rules,
# wrk running the lab's news mix script),
# from Debian's packages when missing: `command:package` where the package is named otherwise.
# Packages are installed with no service started (a policy-rc.d for the duration, unless one
# exists): the tests start their own servers, and prometheus's would keep running.
TEST_TOOLS := nginx pgbouncer chromium promtool:prometheus wrk
test-deps:
	@missing=""; for tool in $(TEST_TOOLS); do command=$${tool%%:*}; \
		command -v $$command >/dev/null || [ -x /usr/sbin/$$command ] || missing="$$missing $${tool##*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (Debian packages)"; policy=/usr/sbin/policy-rc.d; made=; \
		[ -e $$policy ] || { printf '#!/bin/sh\nexit 101\n' >$$policy && chmod +x $$policy && made=1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		status=$$?; [ -z "$$made" ] || rm -f $$policy; exit $$status; fi

# Lint, types, the layer contracts (import-linter), then the test suite against real servers (throwaway embedded ones unless
# TEST_DATABASE_URL / TEST_REDIS_URL are set), with a coverage report of service/ (the files not
# fully covered) that fails under the floor in pyproject.toml's [tool.coverage.report].
# TEST_PROCESSES pytest processes (pytest-xdist), each with its own embedded servers and whole
# test files (--dist loadfile: a module's servers are started once): most tests wait on the
# servers they start, so two processes finish sooner even on two cores. TEST_PROCESSES=0 runs
# one process (do so when TEST_REDIS_URL names a Redis other runs share).
TEST_PROCESSES ?= 2
test: $(STAMP) test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile deploy/standin/*.Dockerfile
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile --cov=service --cov-report=term-missing:skip-covered --ignore=tests/image

# The one container image (Dockerfile) as newsdesk:local, on its base when that can be pulled,
# else on a stand-in made from Debian's packages (service/cli/image.py); DOCKER_HOST honoured.
# It prints the image's size and layers. ARGS="--standin" skips the registry.
image: $(STAMP)
	$(BIN)/python -m service image $(ARGS)

# The image's three roles run from it against real PostgreSQL and Redis (tests/image/: embedded
# servers unless TEST_DATABASE_URL / TEST_REDIS_URL are set), as deploy/compose.yaml runs them:
# migrations, then the API and a worker, healthchecks, an article processed, clean stops; then
# the compose file itself brought up (its PostgreSQL and Redis pulled, else stand-ins from
# Debian's packages) with a smoke request through it. It prints the time to ready and the stop
# times. `make test` leaves tests/image/ to this target.
image-test: $(STAMP)
	$(BIN)/python -m service image --standins $(ARGS)
	$(BIN)/pytest -p no:randomly -p no:cacheprovider -s tests/image

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile deploy/standin/*.Dockerfile

# The bench extra, pinned with hashes in requirements/bench.txt (the dev lock's pins plus the
# bench extra's; pip-compiled like requirements/dev.txt, the command at its top).
bench-deps: $(STAMP)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/bench.txt
	@command -v wrk >/dev/null && command -v nginx >/dev/null || { \
		echo "installing wrk and nginx (Debian packages)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx; }

# The advice lab: every scaling claim of the Flask guides measured side by side (loopback only,
# bounded, about 20 minutes on 2 cores): bench/results/<timestamp>.json and docs/ADVICE.md.
bench: bench-deps
	$(BIN)/python -m bench.lab

# The same claims, reduced (fewer articles, one concurrency, 1 s runs), the mixed workload and the
# database path included: 17 minutes here (all 13 claims, 1,010 s, on 2026-12-07).
bench-quick: bench-deps
	$(BIN)/python -m bench.lab --quick

# One claim of the lab, measured again: its figures replace that claim's in the latest results
# (bench/results/<timestamp>.json) and docs/ADVICE.md (`--update`). `QUICK=1` for the reduced pass.
LAB_ONE = $(BIN)/python -m bench.lab $(if $(QUICK),--quick) --update --only

# Newsdesk vs Flask's default path vs Quart and the others (claim "serving"): docs/BENCHMARKS.md.
bench-serving: bench-deps
	$(LAB_ONE) serving

# Offset vs cursor pages, and page 1 and a deep cursor page at 1,000 vs the seeded articles
# (claim "pages"): docs/PAGINATION.md.
bench-pagination: bench-deps
	$(LAB_ONE) pages

# Cache hit vs miss vs no cache, the hit path vs a bare Quart Redis GET, lists cached vs not
# (claim "caching"): docs/CACHE.md.
bench-cache: bench-deps
	$(LAB_ONE) caching

# View counts: buffered counters vs one job per view (claim "queues"): docs/VIEWS.md.
bench-views: bench-deps
	$(LAB_ONE) queues

# Prometheus metrics on vs off on a cache hit, rotated rounds (claim "metrics"): docs/METRICS.md.
bench-metrics: bench-deps
	$(LAB_ONE) metrics

# Newsdesk vs the Flask floor vs FastAPI vs Quart, and py-spy layer shares when py-spy is on
# the PATH (claim "profile"): docs/PROFILE.md.
bench-profile: bench-deps
	$(LAB_ONE) profile

# One primary-key read through an ORM session, Core in a transaction, Core in autocommit
# (Newsdesk's reads) and the driver, with the statements PostgreSQL receives (claim "dbpath").
bench-dbpath: bench-deps
	$(LAB_ONE) dbpath

# A news workload on one instance, Hypercorn and granian with 1 and 2 workers: the highest rate
# at p99 <= 50 ms (claim "mixed").
bench-mixed: bench-deps
	$(LAB_ONE) mixed

# The fault suite: PostgreSQL stopped, Redis killed, SIGTERM, the worker killed, slow bodies, a
# held event loop, each under load against servers of its own (loopback, about 2 minutes on 2
# cores): docs/FAULTS.md. Not part of `make test`.
faults: $(STAMP)
	$(BIN)/python -m bench.faults

# The abuse figures (loopback only, a few minutes on 2 cores): redaction time by path length,
# peak memory under a login burst, Redis after 10,000 distinct list queries, before and after
# the limits of docs/SECURITY.md (bench/results/abuse-<timestamp>.json). `make test` runs
# tests/security/, which holds each bound.
abuse: $(STAMP)
	$(BIN)/python -m bench.abuse

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
