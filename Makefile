# The two commands of the README: `make run` (the main job) and `make test`.
# Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Two workers at most: each process holds NumPy, PyTorch, JAX and TensorFlow (~1 GB).
PYTEST_WORKERS ?= 2
OUT ?= runs/main
EPOCHS ?= 100

.PHONY: run test lint install agreement bench-adc bench-losses bench-training study docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of PyTorch first, pinned, so that nothing later pulls a CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all,test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# The main job: Barlow Twins + ADC on the digits bundled with scikit-learn, then the
# linear-probe and kNN accuracy beside the random-encoder and raw-pixel baselines
# (--overwrite: each `make run` replaces the previous run in $(OUT)).
run: $(STAMP)
	$(PY) -m glf_train --backend torch --method barlow_twins --adc \
		--dataset digits --epochs $(EPOCHS) --batch-size 256 --eval-every 10 --out $(OUT) \
		--overwrite

# Every loss in every installed framework against NumPy float64.
agreement: $(STAMP)
	$(PY) benchmarks/agreement.py

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench-adc: $(STAMP)
	$(PY) benchmarks/adc.py

# The benchmarks and the study of docs/benchmarks.md and docs/study.md, as run there
# (CPU-sized; each page gives the GPU variant). Results and plots go to runs/.
comma := ,
# Every term in PyTorch; TensorFlow without MMCR (XLA's SVD takes seconds per call on a
# CPU); JAX with W-MSE at N = 256 only (docs/benchmarks.md: its native can hang jaxlib).
BENCH_ROUNDS = --repeats 10 --threads 1
BENCH_GRID = --sizes 256 1024 --dims 128 2048 $(BENCH_ROUNDS)
BENCH_ZOO = simsiam,vicreg,wmse,moco,mocov3,dcl,dclw,alignment_uniformity,tico,mmcr,nnclr
BENCH_TERMS = byol,barlow_twins,swav,simclr,adc,$(BENCH_ZOO),dino,koleo
bench-losses: $(STAMP)
	mkdir -p runs/bench
	$(PY) benchmarks/losses.py --frameworks torch --terms $(BENCH_TERMS) $(BENCH_GRID) \
		--json runs/bench/losses_torch.json
	$(PY) benchmarks/losses.py --frameworks tensorflow $(BENCH_GRID) \
		--terms $(subst $(comma)mmcr,,$(BENCH_TERMS)) --json runs/bench/losses_tensorflow.json
	$(PY) benchmarks/losses.py --frameworks jax $(BENCH_GRID) \
		--terms $(subst $(comma)wmse,,$(BENCH_TERMS)) --json runs/bench/losses_jax.json
	$(PY) benchmarks/losses.py --frameworks jax --terms wmse --sizes 256 --dims 128 \
		$(BENCH_ROUNDS) --json runs/bench/losses_jax_wmse.json
	$(PY) benchmarks/plot.py losses runs/bench/losses_torch.json \
		runs/bench/losses_tensorflow.json runs/bench/losses_jax.json \
		runs/bench/losses_jax_wmse.json runs/bench/losses_cpu.png

bench-training: $(STAMP)
	mkdir -p runs/bench
	$(PY) benchmarks/training.py --arch small_cnn --batch-size 256 --steps 30 --warmup 3 \
		--threads 1 --json runs/bench/training_cpu_smallcnn.json \
		--plot runs/bench/training_cpu_smallcnn.png

# Sections 1 and 2 of docs/study.md (the first study's tiers); the page lists the commands
# of the others and of the redone study.
study: $(STAMP)
	$(PY) studies/adc.py --tier legacy-main --epochs 40 --crop-min-area 0.15 \
		--seeds 0,1,2,3,4 --jobs 2 --out runs/study-long
	$(PY) studies/adc.py --tier legacy-main --epochs 40 --crop-min-area 0.15 --seeds 0,1,2 \
		--main-arms "adc,prior without other view" --jobs 2 --out runs/study-long

# The documentation site (MkDocs + Material + mkdocstrings) into site/; any warning fails.
# Its own venv with the docs extra alone: no deep-learning framework is installed (the API
# pages are read from the source without importing it; MathJax comes from the extra).
DOCS_VENV ?= .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

$(DOCS_STAMP): pyproject.toml
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DOCS_VENV)/bin/python -m pip install --quiet -e ".[docs]"
	rm -f $(DOCS_VENV)/.installed-*
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(DOCS_VENV) site runs .pytest_cache .hypothesis
