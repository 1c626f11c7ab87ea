# Mirage reproduction: see `make help`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help test test-gpu lint clean venv check-saved

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.txt
	$(VPY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv from the pinned requirements

lint: $(STAMP)  ## ruff over the whole tree
	$(VPY) -m ruff check .

test: $(STAMP)  ## set up .venv and run the CPU test tier (lint, unit, interpreter, AOT)
	$(VPY) -m ruff check .
	$(VPY) -m pytest -q

test-gpu: $(STAMP)  ## the GPU test tier (needs CUDA)
	$(VPY) -m pytest -q -m gpu

.PHONY: bench-kernels
bench-kernels: $(STAMP)  ## the six reference uGraphs vs eager and the memory floor (needs CUDA)
	$(VPY) scripts/bench_kernels.py $(BENCH_ARGS)

check-saved: $(STAMP)  ## validate and verify every file in saved_mugraphs/
	$(VPY) -m mirage check saved_mugraphs/*.json

clean:  ## remove run output and caches (keeps .venv)
	rm -rf results .cache .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
