# Two commands do all the set-up on a fresh machine:
#   make example   - run the example service on embedded defaults (http://127.0.0.1:8000/docs)
#   make test      - install everything the suite needs (Python packages, redis-server, ...) and run it on the
#                    supported spread
#
# The supported spread is defined once, in tox.ini (`tox -l` lists it): py310-oldest, starlette-only, newest, lint
# and docs. tox and tox-uv live in a bootstrap virtualenv (.venv-tox) made here; uv builds the environments in .tox/.
#   make test           the full suite (newest, on pytest-xdist workers, then the `serial` tests alone), and beside
#                       it the core environments and the docs (.ci/spread.sh)
#   make test-newest / test-oldest / test-starlette-only    one environment; PYTEST_ARGS="..." goes to pytest
#   make lint           ruff, ruff format, mypy, lint-imports, scripts/layering_counts.py
#   make docs           the documentation site, strict, into site/
#   make bench-record   run the benchmarks, save their figures in benchmarks/results/*.json (BENCH_ARGS=--quick)
#   make bench-plots    docs/img/bench-*.svg from the saved results (runs no benchmark)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

BOOT := .venv-tox
TOX := $(BOOT)/bin/tox

.PHONY: example test test-newest test-oldest test-starlette-only deps lint docs docs-serve bench bench-record bench-plots dist clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# tox itself runs on any Python >= 3.10; the interpreters of the spread are found by .ci/find-python.sh.
$(BOOT)/.installed:
	rm -rf $(BOOT)
	python="$$(bash .ci/find-python.sh newest)" && "$$python" -m venv $(BOOT)
	$(BOOT)/bin/python -m pip install -q --upgrade pip
	$(BOOT)/bin/python -m pip install -q "tox>=4.20" "tox-uv>=1.11" "twine>=5"
	touch $@

# tox with the spread's interpreters (a missing one fails, loudly).
RUN_TOX := TOX=$(TOX) bash .ci/tox.sh

example: $(VENV)/.installed
	$(PY) -m uvicorn examples.service:app --host $(HOST) --port $(PORT)

deps:
	bash .ci/install-deps.sh

test: $(BOOT)/.installed deps
	TOX=$(TOX) bash .ci/spread.sh

test-newest: $(BOOT)/.installed deps
	$(RUN_TOX) run -e newest -- $(PYTEST_ARGS)

test-oldest: $(BOOT)/.installed
	$(RUN_TOX) run -e py310-oldest -- $(PYTEST_ARGS)

test-starlette-only: $(BOOT)/.installed
	$(RUN_TOX) run -e starlette-only -- $(PYTEST_ARGS)

lint: $(BOOT)/.installed
	$(RUN_TOX) run -e lint

docs: $(BOOT)/.installed
	$(RUN_TOX) run -e docs

docs-serve: $(BOOT)/.installed
	$(RUN_TOX) run -e docs --notest
	.tox/docs/bin/mkdocs serve --dev-addr $(HOST):$(PORT)

bench: $(VENV)/.installed deps
	$(PY) benchmarks/run_all.py

BENCH_ARGS ?=
bench-record: $(VENV)/.installed deps
	$(PY) benchmarks/record.py $(BENCH_ARGS)

# Re-draws every plot of docs/benchmarks.md from the JSON the benchmarks saved (no benchmark is run).
bench-plots: $(BOOT)/.installed
	$(RUN_TOX) run -e docs --notest
	.tox/docs/bin/python benchmarks/plot.py

# The release artifacts, checked the way PyPI checks them.
dist: $(BOOT)/.installed
	rm -rf dist
	$(BOOT)/bin/python -m uv build --sdist --wheel --out-dir dist
	$(BOOT)/bin/twine check --strict dist/*

clean:
	rm -rf $(VENV) $(BOOT) .tox site .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
