# The two entry points of the README. Both create .venv on first use.
#   make run    set up and serve on http://127.0.0.1:8888 (in-process bus, no Redis)
#   make test   set up (Python packages, and redis-server, nginx, chromium from
#               Debian when missing), lint and format-check (ruff.toml), type-check
#               (mypy.ini, tests included) and run the whole test suite with line and
#               branch coverage of the server code (.coveragerc)
#   make mutation  mutation testing of the pure modules and the room hub (long:
#               scripts/mutation.sh; not part of make test)
VENV := .venv
PY := $(VENV)/bin/python
PYTHON3 ?= python3

.PHONY: run test lint mutation system-deps

run: $(VENV)/.run-deps
	$(PY) server.py $(ARGS)

test: lint $(VENV)/.test-deps system-deps
	$(PY) -m mypy
	$(PY) -m pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

lint: $(VENV)/.test-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

mutation: $(VENV)/.test-deps
	bash scripts/mutation.sh

system-deps:
	bash scripts/system-deps.sh

$(VENV)/bin/python:
	$(PYTHON3) -m venv $(VENV)

$(VENV)/.run-deps: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps
