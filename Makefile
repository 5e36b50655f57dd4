# One set-up command, one main job, one test command (see README.md).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint run clean-flower

setup:  ## create .venv, install OncoFed and configure the local Flower simulation
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,tracking]"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m oncofed.common.cli.flower_setup
	@# the dashboard's browser test drives Debian's chromium: installed when missing
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "note: no chromium; the dashboard test needs it: sudo apt-get install -y chromium"

test:  ## the test command CI runs
	$(BIN)/python -m pytest -q

lint:  ## ruff (style, complexity) and mypy over common/, client/ and server/
	$(BIN)/ruff check .
	rm -rf .mypy-src && mkdir -p .mypy-src/oncofed
	for t in common client server; do ln -s ../../$$t .mypy-src/oncofed/$$t; done
	$(BIN)/mypy -p oncofed.common -p oncofed.client -p oncofed.server

run:  ## the main job, with the default 7 virtual hospitals
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/flwr run simulations/lits_sites --stream
