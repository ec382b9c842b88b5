# Two commands do all the set-up on a fresh machine:
#   make example   - run the example service on embedded defaults (http://127.0.0.1:8000/docs)
#   make test      - install everything the suite needs (Python extras, redis-server, ...) and run it on the
#                    supported spread (below)
#
# The supported spread, each in its own virtualenv (rebuilt when pyproject.toml changes):
#   .venv-newest          newest Python found, newest releases     full suite (brokers, database, browser)
#   .venv-py310-oldest    Python 3.10, the oldest Starlette/FastAPI/pydantic pyproject.toml allows   core suite
#   .venv-starlette-only  newest Python, newest releases minus FastAPI                               core suite
# The core suite is `-m "not servers"`: tests using a server, database or browser fixture are marked `servers`
# automatically (tests/conftest.py) and run in the full suite. A missing interpreter fails `make test`.
# `make test-newest` / `test-oldest` / `test-starlette-only` run one; PYTEST_ARGS="..." is passed to pytest.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# The slowest tests of each run are listed, so a CI log shows where its time went.
PYTEST := -m pytest --durations=10

NEWEST := .venv-newest
OLDEST := .venv-py310-oldest
BARE := .venv-starlette-only
CORE := -m "not servers"

.PHONY: example test test-newest test-oldest test-starlette-only deps lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# Each spread venv is rebuilt from scratch, so "newest" means the newest releases at build time.
$(NEWEST)/.installed: pyproject.toml
	rm -rf $(NEWEST)
	python="$$(bash .ci/find-python.sh newest)" && "$$python" -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install -q --upgrade pip
	$(NEWEST)/bin/python -m pip install -q -e ".[test]"
	touch $@

$(OLDEST)/.installed: pyproject.toml .ci/oldest-pins.py
	rm -rf $(OLDEST)
	python="$$(bash .ci/find-python.sh 3.10)" && "$$python" -m venv $(OLDEST)
	$(OLDEST)/bin/python .ci/oldest-pins.py > $(OLDEST)/constraints.txt
	$(OLDEST)/bin/python -m pip install -q --upgrade pip
	$(OLDEST)/bin/python -m pip install -q -e ".[test]" -c $(OLDEST)/constraints.txt
	$(OLDEST)/bin/python .ci/oldest-pins.py --check
	touch $@

$(BARE)/.installed: pyproject.toml
	rm -rf $(BARE)
	python="$$(bash .ci/find-python.sh newest)" && "$$python" -m venv $(BARE)
	$(BARE)/bin/python -m pip install -q --upgrade pip
	$(BARE)/bin/python -m pip install -q -e ".[test]"
	$(BARE)/bin/python -m pip uninstall -q -y fastapi
	touch $@

example: $(VENV)/.installed
	$(PY) -m uvicorn examples.service:app --host $(HOST) --port $(PORT)

deps:
	bash .ci/install-deps.sh

# Cheapest first; every run goes on after another one failed, so one CI log shows all of the spread.
test:
	status=0; \
	$(MAKE) test-oldest || status=1; \
	$(MAKE) test-starlette-only || status=1; \
	$(MAKE) test-newest || status=1; \
	exit $$status

test-newest: $(NEWEST)/.installed deps
	$(NEWEST)/bin/python $(PYTEST) $(PYTEST_ARGS)

test-oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/python $(PYTEST) $(CORE) $(PYTEST_ARGS)

# Modules that cannot be imported without FastAPI are left out by name (listed in the summary); tests that
# need it only at run time are marked `fastapi`.
test-starlette-only: $(BARE)/.installed
	FASTAPI_EVENTS_WITHOUT_FASTAPI=1 $(BARE)/bin/python $(PYTEST) -m "not servers and not fastapi" $(PYTEST_ARGS)

lint: $(NEWEST)/.installed
	$(NEWEST)/bin/ruff check fastapi_events tests examples benchmarks
	$(NEWEST)/bin/ruff format --check fastapi_events
	$(NEWEST)/bin/mypy
	$(NEWEST)/bin/lint-imports

bench: $(VENV)/.installed deps
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(NEWEST) $(OLDEST) $(BARE) .mypy_cache .ruff_cache .pytest_cache
