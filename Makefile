# The two commands a newcomer needs are `make run` and `make test`; each does
# all of its own set-up (virtualenv, dependencies, services, database).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SERVICES := $(PY) -m sharedrecord.localservices

ASSETS := node_modules/.installed

.PHONY: run test test-slow venv assets browser lint format typecheck migrations-check lock bench clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# Front-end assets (the NHS design system, axe-core for tests) from the npm registry.
$(ASSETS): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(ASSETS)

assets: $(ASSETS)

# Debian's chromium drives the browser tests (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

## make run: the platform on http://127.0.0.1:8000 with the demo borough (Ctrl-C stops it)
run: venv assets
	$(SERVICES) run

## make test: the fast suite (under 3 minutes) against real PostgreSQL, Redis and Celery
# One pytest process per core by default, each on its own test database; a test
# module stays on one process (its module-built record is shared by its tests).
TEST_WORKERS ?= 2
test: venv assets
	$(SERVICES) exec --redis-db 15 -- $(PY) manage.py collectstatic --no-input -v0
	$(SERVICES) exec --redis-db 15 -- $(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## make test-slow: end-to-end (real worker, real HTTP), browser, fuzz and fault tests
test-slow: venv assets browser
	$(SERVICES) exec --redis-db 15 -- $(PY) manage.py collectstatic --no-input -v0
	$(SERVICES) exec --redis-db 15 -- $(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: venv
	$(SERVICES) exec -- $(VENV)/bin/mypy .

migrations-check: venv
	$(SERVICES) exec -- $(PY) manage.py makemigrations --check --dry-run

lock: venv
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock.new
	{ echo '# Pinned, resolved set of every dependency (runtime and dev). Regenerate with `make lock`.'; cat requirements.lock.new; } > requirements.lock
	rm requirements.lock.new

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache node_modules
