# ShareGuard: `make demo` runs the product, `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
# Python 3.12 or newer: pyenv selects 3.12.1 through .python-version; otherwise whatever python3.12+ is on PATH.
PYTHON ?= $(shell for p in python3.12 python3.13 python3; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v $$p; break; }; done)
PYTEST_ARGS ?=

.PHONY: venv demo test lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "需要 Python 3.12 或更新版本 (Python >= 3.12 is required)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

demo: venv
	$(BIN)/shareguard demo

test: venv lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check gateway detectors tests bench
	$(BIN)/ruff format --check gateway detectors tests bench
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
