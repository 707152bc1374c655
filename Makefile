# The two commands a fresh machine needs: `make dev` runs the whole system with no Docker,
# `make test` runs every check CI runs. Both create the virtualenv on first use, installing the
# exact versions and hashes of requirements-dev.lock, then the project itself (editable).
# PYTHON and VENV choose the interpreter and its virtualenv: `.ci/run` gives each Python its own.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make lock LOCK_FLAGS=--upgrade` moves every pin to the newest allowed version.
LOCK_FLAGS ?=
LOCK := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(LOCK_FLAGS)

.PHONY: dev test lint bench lock clean

$(BIN)/usersvc: pyproject.toml setup.py requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
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
	for b in emulator_bench worker_bench service_bench replay_bench bisect_bench; do \
		$(BIN)/python -m benchmarks.$$b || exit 1; done

# Pins for every supported Python (3.11-3.13) in one file each: requirements-dev.lock for
# development and CI, requirements.lock (the runtime dependencies and the build backend, at the
# same versions) for the image and the installed-wheel test.
lock: $(BIN)/usersvc
	$(LOCK) --extra dev --extra embedded pyproject.toml -o requirements-dev.lock
	echo 'setuptools>=68' | $(LOCK) -c requirements-dev.lock pyproject.toml - -o requirements.lock

clean:
	rm -rf .venv .venv-* var .pytest_cache .mypy_cache .ruff_cache
