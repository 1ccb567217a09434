# Newsdesk. The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench bench-pagination bench-cache bench-deps clean

# Create the virtual environment and install the project (again when pyproject.toml changes).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Newsdesk needs Python 3.11 or newer as '$(PYTHON)'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# API on 127.0.0.1:$${PORT:-8000} plus one arq worker; embedded PostgreSQL and Redis in .data/
# unless DATABASE_URL / REDIS_URL are set. Ctrl-C stops everything.
run: $(STAMP)
	exec $(BIN)/python -m service run

# Lint, types, then the test suite against real servers (throwaway embedded ones unless
# TEST_DATABASE_URL / TEST_REDIS_URL are set).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

bench-deps: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package)"; \
		apt-get update -qq && apt-get install -y -qq wrk; }

# Serving-model benchmark (loopback only, bounded): writes bench/results/ and docs/BENCHMARKS.md.
bench: bench-deps
	$(BIN)/python -m bench.serving

# Page 1 and a deep cursor page at 1,000 vs 1,000,000 seeded articles: docs/PAGINATION.md.
bench-pagination: bench-deps
	$(BIN)/python -m bench.pagination

# Cache hit vs miss, the hit path vs a bare Quart Redis GET, lists cached vs not: docs/CACHE.md.
bench-cache: bench-deps
	$(BIN)/python -m bench.cache

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
