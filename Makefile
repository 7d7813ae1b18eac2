PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

## Install into .venv and start the server on http://127.0.0.1:8000 (SQLite, local storage, sandbox).
run: $(STAMP)
	$(BIN)/soragate serve

# Test processes (pytest-xdist): most tests wait on servers, fakes and browsers, so 4 keep 2 cores busy.
TEST_WORKERS ?= 4

## Install test needs and run the whole suite.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python bench/read_path.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
