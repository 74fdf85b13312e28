# scope — two commands do all the setup: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast demo lint bench clean

install: $(STAMP)

# torch first, pinned: a looser requirement asked for before torch is installed would pull
# the newest CUDA build (gigabytes). With 2.13.0 present, `torch>=2.2` is satisfied as is.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# the suite without the tests marked `slow` (end-to-end runs and long ones, docs/testing.md),
# in two processes that each take whole test files (module fixtures are built once)
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" -n 2 --dist loadfile

demo: $(STAMP)
	$(BIN)/scope demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache build *.egg-info
