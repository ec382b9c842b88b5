# Two commands do all the set-up on a fresh machine:
#   make example   - run the example service on embedded defaults (http://127.0.0.1:8000/docs)
#   make test      - install everything the suite needs (Python extras, redis-server, ...) and run it
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: example test deps lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

example: $(VENV)/.installed
	$(PY) -m uvicorn examples.service:app --host $(HOST) --port $(PORT)

deps:
	bash .ci/install-deps.sh

test: $(VENV)/.installed deps
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check fastapi_events tests examples benchmarks
	$(VENV)/bin/ruff format --check fastapi_events
	$(VENV)/bin/mypy

bench: $(VENV)/.installed deps
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
