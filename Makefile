# One set-up command, one main job, one test command (see README.md).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint run clean-flower

setup:  ## create .venv, install OncoFed and configure the local Flower simulation
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m oncofed.common.cli.flower_setup

test:  ## the test command CI runs
	$(BIN)/python -m pytest -q

lint:  ## ruff (style, complexity) and mypy over common/, client/ and server/
	$(BIN)/ruff check .
	rm -rf .mypy-src && mkdir -p .mypy-src/oncofed
	for t in common client server; do ln -s ../../$$t .mypy-src/oncofed/$$t; done
	$(BIN)/mypy -p oncofed.common -p oncofed.client -p oncofed.server

run:  ## the main job, with the default 7 virtual hospitals
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/flwr run simulations/lits_sites --stream
