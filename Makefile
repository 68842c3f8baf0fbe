# Quick start: `make demo` (the main job end to end on the local stack), `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := .local/runtime
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(RUNTIME)/.installed

.PHONY: venv runtime up down demo test unit bench clean

venv: $(STAMP)

# The project's virtual environment: function + CLI + local stack + test tools.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The local stand-in for the training runtime image (what trainers run on).
runtime: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): local/runtime-requirements.txt
	test -x $(RUNTIME)/bin/python || $(PYTHON) -m venv $(RUNTIME)
	$(RUNTIME)/bin/python -m pip install --quiet --upgrade pip
	$(RUNTIME)/bin/python -m pip install --quiet -r local/runtime-requirements.txt
	touch $@

up: venv runtime
	$(PY) -m submitter_local.stack up

down: venv
	$(PY) -m submitter_local.stack down

demo: venv runtime
	$(PY) -m submitter_local.demo

test: venv runtime
	$(PY) -m pytest -q

bench: venv
	$(PY) bench/package_inspection.py --runs 5

unit: venv
	$(PY) -m pytest -q -m "not stack"

clean: down
	rm -rf .local
