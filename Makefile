# Two entry points: `make train` (the main job) and `make test`. Both create or refresh .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv train test test-all ui bench

venv: $(VENV)/.installed

# Reinstalls when pyproject.toml changes; the stamp keeps repeated runs fast.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

train: venv
	$(BIN)/siamese train $(ARGS)

test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

test-all: venv
	$(BIN)/pytest -m "slow or not slow" $(PYTEST_ARGS)

ui: venv
	$(BIN)/siamese ui

bench: venv
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/data_memory.py
