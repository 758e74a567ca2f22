# gmlib: the two commands are `make book` (the main job) and `make test` (every test).
# Both set everything up on a fresh machine: virtual environment, packages, data.

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
PROFILE  ?= ci
BUILD    := build
STAMP    := $(VENV)/.installed

.PHONY: help setup data book test unit notebooks-ci nbval book-ci lab bench bench-deps lock sync clean

help:
	@echo "make book     build the executed book (PROFILE=$(PROFILE)); prints where the HTML is"
	@echo "make test     run every test: unit tests, notebooks at profile ci, nbval, book build"
	@echo "make lab      open JupyterLab on notebooks/"
	@echo "make bench    run the benchmarks in benchmarks/ (first the speed goals: bench_speed.py)"
	@echo "make sync     re-pair notebooks/*.md -> .ipynb after editing a chapter"

# ---- set-up ---------------------------------------------------------------------------------
$(STAMP): pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements-lock.txt torch==2.13.0
	$(PY) -m pip install --quiet -c requirements-lock.txt -e '.[notebooks,book,test,vision,cluster]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (gmlib)"
	touch $@

setup: $(STAMP) system-deps

# From Debian when we can install packages (root, apt available): FashionMNIST, and the headless
# Chromium with its driver that the browser test of the built book uses.
system-deps:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)); \
	  else echo "note: FashionMNIST will be downloaded from its official mirror (no root for apt-get)"; fi; \
	fi
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq chromium chromium-driver || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)); \
	  else echo "note: install chromium and chromium-driver for the browser test of the book (make test)"; fi; \
	fi

data: setup
	$(PY) -m gmlib data mnist fashion-mnist

# ---- the main job ---------------------------------------------------------------------------
book: data
	$(PY) book/build.py --profile $(PROFILE)

# ---- tests ----------------------------------------------------------------------------------
test: data
	$(PY) -m pytest -q tests
	$(PY) book/build.py --profile ci
	GMLIB_BOOK_HTML=$(BUILD)/book/ci/_build/html $(PY) -m pytest -q -p no:cacheprovider tests/browser
	$(PY) -m pytest -q --nbval-lax --nbval-current-env --nbval-sanitize-with book/nbval-sanitize.cfg -p no:cacheprovider $(BUILD)/executed/ci

# ---- conveniences -----------------------------------------------------------------------------
lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

# jemalloc from Debian, for benchmarks/bench_allocator.py (a caching allocator against glibc's).
bench-deps:
	@if [ ! -f /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq libjemalloc2 || (apt-get update -qq && apt-get install -y -qq libjemalloc2)); \
	  else echo "note: install libjemalloc2 for benchmarks/bench_allocator.py"; fi; \
	fi

bench: data bench-deps
	$(PY) benchmarks/bench_speed.py
	$(PY) benchmarks/bench_eval_breakdown.py
	$(PY) benchmarks/bench_evaluate.py
	$(PY) benchmarks/bench_matching.py
	$(PY) benchmarks/bench_dm_vs_dc.py
	$(PY) benchmarks/bench_cpu_levers.py
	if [ -f /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ]; then $(PY) benchmarks/bench_allocator.py; fi

sync: setup
	$(VENV)/bin/jupytext --sync notebooks/*.md

lock: setup
	$(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//' > requirements-lock.txt.new && mv requirements-lock.txt.new requirements-lock.txt

clean:
	rm -rf $(BUILD) book/_build
