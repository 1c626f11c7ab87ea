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

# Figure 7 and the Hopper runs (scripts/fig7.py); GPU= names the card (checked against NVML),
# FORCE_GPU=1 files results under GPU= anyway and records the override, RESUME=1 continues an
# interrupted run, FIG7_ARGS passes more options (python -m scripts.fig7 --help).
.PHONY: fig7 hopper verify
FIG7_FLAGS = $(if $(FORCE_GPU),--force-gpu) $(if $(RESUME),--resume) $(FIG7_ARGS)

fig7: $(STAMP)  ## Figure 7 on this GPU, b in {1, 8}: make fig7 GPU=a100 [FORCE_GPU=1]
	@$(VPY) -m scripts.fig7 $(if $(GPU),--gpu $(GPU)) --batches 1,8 $(FIG7_FLAGS)

hopper: $(STAMP)  ## Figure 7 on an H100, b in {1, 8, 16} (GPU=h200 on an H200)
	@$(VPY) -m scripts.fig7 --gpu $(or $(GPU),h100) --batches 1,8,16 $(FIG7_FLAGS)

verify: $(STAMP)  ## check results/<gpu>/ against expected/ (bands decide; paper claims shown)
	@$(VPY) -m scripts.verify $(if $(GPU),--gpu $(GPU))

clean:  ## remove run output and caches (keeps .venv)
	rm -rf results .cache .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
