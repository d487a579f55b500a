# make run   : create the environment if missing, prepare the model, execute every notebook -> build/
# make test  : create the environment if missing, run the unit tests and every notebook (nbval)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1

.PHONY: setup model run test unit notebooks bench lab clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=24"
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

setup: $(STAMP) model

model: $(STAMP)
	$(PY) -m helpers prepare smollm2-135m

run: setup
	$(PY) -m helpers build --out build

test: setup
	$(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider

unit: setup
	$(PY) -m pytest tests

notebooks: setup
	$(PY) -m pytest notebooks --nbval-lax

bench: setup
	$(PY) benchmarks/bench_load.py
	$(PY) benchmarks/bench_pruning.py
	$(PY) benchmarks/bench_trace.py

lab: setup
	$(VENV)/bin/jupyter lab notebooks/00_start_here.ipynb

clean:
	rm -rf build .pytest_cache
