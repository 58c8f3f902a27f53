# Descent: `make run` starts the service, `make test` runs the whole suite, `make bench` measures.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
WORKERS ?= 1
# torch's CPU build first and pinned: any looser requirement pulls several GB of CUDA wheels
TORCH := torch==2.13.0
# e.g. TORCH_PIP_FLAGS='--index-url https://download.pytorch.org/whl/cpu' where PyPI would
# serve the CUDA build
TORCH_PIP_FLAGS ?=

.PHONY: run test lint browser bench install install-test clean

$(BIN)/python:
	@echo "creating the virtual environment in $(VENV)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	@echo "installing $(subst ==, ,$(TORCH)) (CPU build; the longest step)..."
	$(BIN)/pip install -q $(TORCH_PIP_FLAGS) $(TORCH)
	@echo "installing Descent and its dependencies..."
	$(BIN)/pip install -q -e .
	@touch $@
	@echo "installed: $(BIN)/descent (or 'source $(BIN)/activate' to put it on the PATH)"

$(VENV)/.installed-test: $(VENV)/.installed
	@echo "installing the test tools..."
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/descent up --host $(HOST) --port $(PORT) --workers $(WORKERS)

lint: install-test
	$(BIN)/ruff check service worker tests bench examples
	$(BIN)/ruff format --check service worker tests bench examples
	$(BIN)/mypy

# the browser tests drive Debian's chromium: installed here where we may (root with apt-get);
# without it they skip, or fail under CI=true
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "chromium is not installed: the browser tests will not run"

test: lint browser
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
