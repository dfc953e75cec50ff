# Two commands on a fresh machine:
#   make main   set up, build the built-in data, train the tiny model, sample and evaluate (runs/tiny)
#   make test   set up and run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/tiny

.PHONY: setup main test test-slow
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

main: setup
	$(PY) -m experiments.train --config=configs/tiny.py --workdir=$(WORKDIR)

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow
