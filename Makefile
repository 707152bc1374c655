# The two commands a fresh machine needs: `make dev` runs the whole system with no Docker,
# `make test` runs every check CI runs. Both create the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test lint bench clean

$(BIN)/usersvc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

dev: $(BIN)/usersvc
	$(BIN)/usersvc dev

lint: $(BIN)/usersvc
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(BIN)/usersvc lint
	$(BIN)/pytest

# Each benchmark prints its figures and its ratio against a baseline measured in the same run.
bench: $(BIN)/usersvc
	for b in emulator_bench worker_bench service_bench replay_bench; do \
		$(BIN)/python -m benchmarks.$$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
