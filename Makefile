# The two commands of the README: `make run` (the main job) and `make test`.
# Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Two workers at most: each process holds NumPy, PyTorch, JAX and TensorFlow (~1 GB).
PYTEST_WORKERS ?= 2
OUT ?= runs/main

.PHONY: run test lint typecheck install bench-adc clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of PyTorch first, pinned, so that nothing later pulls a CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all,test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m glf_losses.agreement

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench-adc: $(STAMP)
	$(PY) benchmarks/adc.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
