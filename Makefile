# Two commands on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned (a bare `torch` requirement would pull a multi-GB CUDA build);
# override with `make test TORCH_SPEC="torch==2.5.1"` if your machine needs another build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.lazyhasty-installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist; installed here when we can (root + apt), otherwise the
# demo skips the experiments that need it and says how to get it.
FMNIST := /usr/share/datasets/fashion-mnist

demo: $(STAMP)
	@if [ ! -d $(FMNIST) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
	  echo "installing Debian's dataset-fashion-mnist ..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	    || echo "could not install dataset-fashion-mnist; the Fashion-MNIST experiments will be skipped"; \
	fi
	$(BIN)/lazyhasty demo

# One test process per core (pytest-xdist); tests/conftest.py pins each to its own core and orders the long tests
# first. --dist loadgroup hands tests out one at a time, except the SLURM tests: one process runs them all in turn.
test: $(STAMP)
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m pytest -n $$(nproc) --dist loadgroup

bench: $(STAMP)
	$(BIN)/python benchmarks/regimes.py

clean:
	rm -rf $(VENV) runs
