# The everyday verbs. `make demo` and `make test` work on a fresh machine: both set up
# the virtual environment (and, for tests, the browser) first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench serve setup browser clean faults screenshots

$(STAMP): pyproject.toml api/ingest/_otlp.c api/ingest/_metrics.c api/ingest/_wire.h
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/inferwatch demo

serve: setup
	$(BIN)/inferwatch serve

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check api collector web tests bench scripts
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench

faults: setup
	$(BIN)/python scripts/faults.py

screenshots: setup
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
