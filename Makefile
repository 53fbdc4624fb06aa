# The two entry points of the README. Both create .venv on first use.
#   make run    set up and serve on http://127.0.0.1:8888 (in-process bus, no Redis)
#   make test   set up (Python packages, and redis-server, nginx, chromium from
#               Debian when missing), type-check (mypy.ini) and run the whole test suite
VENV := .venv
PY := $(VENV)/bin/python
PYTHON3 ?= python3

.PHONY: run test system-deps

run: $(VENV)/.run-deps
	$(PY) server.py $(ARGS)

test: $(VENV)/.test-deps system-deps
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

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
