# Two commands on a fresh machine:
#   make main   set up, build the built-in data, train the tiny model, sample and evaluate it (runs/tiny): the verdict
#               table of the main job's targets, then the report at runs/tiny/report/index.html
#   make test   set up and run the test suite (make test-slow: the slow end-to-end tests)
# `make main TRAIN_ARGS=--config.train.steps=100 EVAL_CLIPS=8` makes a quick smoke run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/tiny
TRAIN_ARGS ?=
EVAL_CLIPS ?= 0
PYTEST_ARGS ?=
# XLA:CPU allocates each step's temporaries afresh; with this glibc setting those large blocks are backed by
# transparent huge pages: ~300x fewer page faults and fewer TLB misses per CPU step (benchmarks/README.md,
# 'Host memory'). Other C libraries and kernels without THP ignore it.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

.PHONY: setup setup-dev main test test-slow
# The main job needs requirements.txt only; the tests and benchmarks also need requirements-dev.txt (pytest,
# torch for the reference implementations, the GCS emulator).
setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	touch $@

main: setup
	$(PY) -m experiments.train --config=configs/tiny.py --workdir=$(WORKDIR) $(TRAIN_ARGS)
	$(PY) -m experiments.sample --workdir=$(WORKDIR) --mode=joint --num=4
	$(PY) -m experiments.sample --workdir=$(WORKDIR) --mode=audio_to_video --num=4
	$(PY) -m experiments.evaluate --workdir=$(WORKDIR) --split=test --num_clips=$(EVAL_CLIPS)

test: setup-dev
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: setup-dev
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)
