# make run  - start the whole system (web, worker, mock inverter; a local Redis if none is reachable)
# make test      - run the test suite against real Redis, SQLite files and HTTP servers on 127.0.0.1, in
#                  TEST_WORKERS processes (pytest-xdist; each takes whole test modules, so a module's shared
#                  processes stay shared); TEST_WORKERS=0 runs it in this one process. Four on two cores:
#                  much of the suite waits on real time (offline delays, leases), which the third and fourth
#                  overlap (docs/benchmarks.md, "make test with four processes")
# make test-fast - only the tests that start no project process and no browser (-m "not processes",
#                  marked by tests/conftest.py): models, planner, in-process API, the mock's physics
# make lint - ruff (lint and format) and mypy
SHELL := /bin/bash
PYTHON ?= python3
TEST_WORKERS ?= 4
# test-fast uses no real time, only CPU: one process per core
FAST_TEST_WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)
TEST_STAMP := $(VENV)/.test-installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test test-fast lint install install-test redis bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "error: Python 3.10 or newer is needed as $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[postgres]'
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,postgres]'
	@touch $(TEST_STAMP)

install: $(STAMP)
install-test: $(TEST_STAMP)

redis:
	@scripts/ensure-redis

run: install
	@scripts/run-demo

# pytest keeps the test modules it rewrote (for its assert messages) only as bytecode files: where
# PYTHONDONTWRITEBYTECODE is set, every test process would parse and rewrite the ~100 test modules again, and
# compile the project's, on every run (~5 s of CPU apiece). The files go to the ignored __pycache__ folders.
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest

test: install-test
	@scripts/ensure-postgres
	@scripts/ensure-browser
	@eval "$$(scripts/ensure-redis --export)" && $(PYTEST) -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: install-test
	@scripts/ensure-postgres
	@eval "$$(scripts/ensure-redis --export)" && $(PYTEST) -m "not processes" -n $(FAST_TEST_WORKERS) $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install-test
	@echo "benchmarks are run one by one; see docs/benchmarks.md for the commands"

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis test-artifacts
