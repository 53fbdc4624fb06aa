# The two entry points of the README. Both create .venv on first use.
#   make run    set up and serve on http://127.0.0.1:8888 (in-process bus, no Redis)
#   make test   set up (Python packages, and redis-server, nginx, chromium from
#               Debian when missing), lint and format-check (ruff.toml), type-check
#               (mypy.ini, tests included) and run the whole test suite with line and
#               branch coverage of the server code (.coveragerc)
#   make bench  the issue-9 benchmark, every server and scenario, 3 rounds (~50 min; bench/README.md):
#               BENCH_ARGS="--quick" to try it; on a shared machine run it under flock /tmp/bench.lock
#   make mutation  mutation testing of the pure modules and the room hub (long:
#               scripts/mutation.sh; not part of make test)
VENV := .venv
PY := $(VENV)/bin/python
PYTHON3 ?= python3

# make run keeps its cookie secret in $(RUN_DIR) (git-ignored, mode 0600), so
# names chosen in the lobby survive a restart. It reaches the server through
# the environment: never on the command line (ps shows that), never logged.
RUN_DIR ?= run
AXE := tests/a11y/node_modules/axe-core/axe.min.js
# The in-process bus keeps every room's history in $(RUN_DIR)/chat.sqlite3, so a
# restart loses nothing (not with Redis, which keeps the history itself).
RUN_DATA = $(if $(findstring redis,$(ARGS))$(REDIS_URL)$(CHAT_REDIS_URL),,--data-file $(RUN_DIR)/chat.sqlite3)

.PHONY: run test lint mutation system-deps bench

run: $(VENV)/.run-deps $(RUN_DIR)/cookie-secret
	@CHAT_COOKIE_SECRET="$$(cat $(RUN_DIR)/cookie-secret)" exec $(PY) server.py $(RUN_DATA) $(ARGS)

$(RUN_DIR)/cookie-secret:
	@mkdir -p -m 700 $(RUN_DIR)
	@umask 077 && $(PYTHON3) -c "import secrets; print(secrets.token_urlsafe(32))" > $@.tmp && mv $@.tmp $@
	@echo "made a cookie secret for make run in $@ (names now survive restarts; delete it to reset them)"

test: lint $(VENV)/.test-deps system-deps $(AXE)
	$(PY) -m mypy
	$(PY) -m pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

lint: $(VENV)/.test-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

mutation: $(VENV)/.test-deps
	bash scripts/mutation.sh

# The benchmark needs the shared harness (../shared/bench, with its npm install) and matplotlib for the chart.
bench: $(VENV)/.bench-deps
	$(PY) bench/run.py $(BENCH_ARGS)

$(VENV)/.bench-deps: requirements.txt requirements-bench.txt | $(VENV)/bin/python
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-bench.txt
	touch $@

system-deps:
	bash scripts/system-deps.sh

# axe-core for the accessibility test, pinned by tests/a11y/package-lock.json.
$(AXE): tests/a11y/package-lock.json | system-deps
	cd tests/a11y && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENV)/bin/python:
	$(PYTHON3) -m venv $(VENV)

$(VENV)/.run-deps: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

# The Django example host site (examples/django_site) has packages of its own; its test needs them.
$(VENV)/.test-deps: requirements.txt requirements-dev.txt examples/django_site/requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -r examples/django_site/requirements.txt
	touch $@ $(VENV)/.run-deps
