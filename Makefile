# Mirage reproduction: see `make help`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= mirage-ae:$(VERSION)
MAKE_PROG := $(MAKE)
# A user value as one shell word, quoted (GPU="h100 --adopt" stays one word; the scripts then
# refuse anything but a known card with one `error:` line).
shq = '$(subst ','"'"',$(1))'
# GPU= as one word: a known card bare (as the help shows it), anything else quoted.
gpuq = $(if $(and $(filter 1,$(words $(1))),$(filter $(1),a100 h100 h200 A100 H100 H200)),$(1),$(call shq,$(1)))

.DEFAULT_GOAL := help
.PHONY: help test test-gpu lint clean venv check-saved

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'
	@echo "Variables: GPU=a100|h100|h200 (name the card), FORCE_GPU=1, RESUME=1, QUICK=1 (reduced make all),"
	@echo "  FROM_SCRATCH=1 (search instead of saved uGraphs), DOCKER=auto|always|never, SKIP=/ONLY=parts."
	@echo "README.md says what each target produces and how long it takes."

# make all: scripts/run_all.py runs every part this machine can run (inside $(IMAGE) when Docker
# with GPU support and the image are there), skips the rest with the reason, ends with a summary
# and `make verify`'s verdict. It needs no .venv itself: it builds one (make venv) only to run
# natively. Parts for SKIP=/ONLY=: environment search fig7 hopper fig11 table5 check-saved
# reference verify. With a ready Python elsewhere (the GPU machine): make all VPY=python3 STAMP=
# (the parts' make calls inherit both).
.PHONY: all docker distclean
ALL_FLAGS = $(if $(QUICK),--quick) $(if $(FROM_SCRATCH),--from-scratch) $(if $(GPU),--gpu $(call gpuq,$(GPU))) \
	$(if $(FORCE_GPU),--force-gpu) $(if $(RESUME),--resume) $(if $(DOCKER),--docker $(DOCKER)) \
	$(if $(SKIP),--skip $(call shq,$(SKIP))) $(if $(ONLY),--only $(call shq,$(ONLY))) \
	$(if $(PART_TIMEOUT),--part-timeout $(call shq,$(PART_TIMEOUT))) $(if $(ALL_OUT),--out $(call shq,$(ALL_OUT)))

all:  ## everything this machine can run (figures, tables, saved uGraphs), then the verdict
	@$(PYTHON) -m scripts.run_all --image $(IMAGE) --make "$(MAKE_PROG)" --python "$(VPY)" $(ALL_FLAGS)

docker:  ## build the reproduction image mirage-ae:<version> (needs a Docker engine)
	@command -v docker >/dev/null 2>&1 || { echo "make docker: no docker command on this machine; install Docker (and the NVIDIA Container Toolkit to use a GPU), or run natively: make all"; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make docker: no Docker engine reachable (docker info failed: is the daemon running, may this user use it?); or run natively: make all"; exit 1; }
	docker build -t $(IMAGE) --build-arg VERSION=$(VERSION) \
		--build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) $(DOCKER_BUILD_ARGS) .

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

check-saved: $(STAMP)  ## validate and verify every file in saved_mugraphs/ (a100/ under the A100)
	$(VPY) -m mirage check --target h100 saved_mugraphs/*.json
	$(VPY) -m mirage check --target a100 saved_mugraphs/a100/*.json

# Table 5 (scripts/table5.py): RMSNorm b=1 search time by max block ops, 1 and 8 workers, and
# with pruning off (capped); TABLE5_ARGS passes more options (e.g. --ops 5-8 --cap 120).
.PHONY: table5 search-saved
table5: $(STAMP)  ## Table 5: RMSNorm search time vs max block ops (CPU; results/table5/)
	$(VPY) -m scripts.table5 $(TABLE5_ARGS)

search-saved: $(STAMP)  ## regenerate saved_mugraphs/ by search (SEARCH_ARGS="--target a100": saved_mugraphs/a100/)
	$(VPY) -m scripts.search_saved $(SEARCH_ARGS)

# Figure 7 and the Hopper runs (scripts/fig7.py); GPU= names the card (checked against NVML),
# FORCE_GPU=1 files results under GPU= anyway and records the override, RESUME=1 continues an
# interrupted run, FIG7_ARGS passes more options (python -m scripts.fig7 --help). Each card uses
# its own µGraph set (saved_mugraphs/a100/ on an A100, saved_mugraphs/ on an H100/H200);
# REHEARSE=1 with GPU=a100 on another card rehearses the A100 run there (A100 limits and
# µGraphs, results/a100-rehearsal/, never judged against bands).
.PHONY: fig7 hopper verify
FIG7_FLAGS = $(if $(FORCE_GPU),--force-gpu) $(if $(RESUME),--resume) $(FIG7_ARGS)

fig7: $(STAMP)  ## Figure 7 on this GPU, b in {1, 8}: make fig7 GPU=a100 [FORCE_GPU=1|REHEARSE=1]
	@$(VPY) -m scripts.fig7 $(if $(REHEARSE),--rehearse $(call gpuq,$(or $(GPU),a100)),$(if $(GPU),--gpu $(call gpuq,$(GPU)))) --batches 1,8 $(FIG7_FLAGS)

hopper: $(STAMP)  ## Figure 7 on an H100, b in {1, 8, 16} (GPU=h200 on an H200)
	@$(VPY) -m scripts.fig7 --gpu $(call gpuq,$(or $(GPU),h100)) --batches 1,8,16 $(FIG7_FLAGS)

# Figure 11 (scripts/fig11.py): four decoders end to end, b in {1, 8, 16} on H100/H200, else
# {1, 8}; GPU=, FORCE_GPU=1 and RESUME=1 as fig7, QUICK=1 b = 1 only, FIG11_ARGS passes more
# options (python -m scripts.fig11 --help; e.g. FIG11_ARGS="--budget-s 600 --layers 8").
.PHONY: fig11
FIG11_FLAGS = $(if $(FORCE_GPU),--force-gpu) $(if $(RESUME),--resume) $(if $(QUICK),--batches 1) \
	$(FIG11_ARGS)

fig11: $(STAMP)  ## Figure 11 (end-to-end decode of 4 models) on this GPU: make fig11 GPU=h100
	@$(VPY) -m scripts.fig11 $(if $(GPU),--gpu $(call gpuq,$(GPU))) $(FIG11_FLAGS)

verify: $(STAMP)  ## check results/<gpu>/, results/fig11/<gpu>/ against expected/ (bands decide)
	@$(VPY) -m scripts.verify $(if $(GPU),--gpu $(call gpuq,$(GPU)))

clean:  ## remove run output and caches: results/, .cache/ ... (keeps .venv)
	rm -rf results .cache .pytest_cache .ruff_cache .hypothesis build *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean  ## clean, and remove .venv too
	rm -rf $(VENV)
