# The two commands a newcomer needs:
#   make demo   run the service with demo data on the embedded default (SQLite, one process)
#   make test   set up everything and run the whole test suite on real PostgreSQL and Redis
#               (the heavy scenarios run on their own: make test-heavy)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo gates test test-fast test-e2e test-heavy test-browser install clean

demo: $(STAMP)
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python manage.py demo

gates: $(STAMP)  ## the quality gates CI runs before the tests
	$(BIN)/lint-imports --no-cache
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	bash .ci/check-deploy

test: $(STAMP)  ## everything but the heavy scenarios (those: make test-heavy)
	bash .ci/services
	$(BIN)/pytest -m "not heavy"

test-fast: $(STAMP)   ## no real daphne processes, no heavy scenarios
	bash .ci/services
	$(BIN)/pytest -m "not e2e and not heavy"

test-e2e: $(STAMP)
	bash .ci/services
	$(BIN)/pytest -m e2e

test-heavy: $(STAMP)  ## long load/fault scenarios only
	bash .ci/services
	$(BIN)/pytest -m heavy

test-browser: $(STAMP)  ## headless Chromium against a real daphne (screenshots in artifacts/)
	bash .ci/services
	$(BIN)/pytest -m browser

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) var .pytest_cache
