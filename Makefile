# Two commands set everything up on a fresh machine:
#   make demo   install into .venv and run tunelab's main job (a real study, stored in SQLite)
#   make test   install into .venv and run the linters, the type checker, the layer contract and the tests
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test bench install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,demo]"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/tunelab demo --storage sqlite:///tunelab.db

test: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	OMP_NUM_THREADS=1 $(BIN)/pytest -q

bench: $(BIN)/.installed
	$(BIN)/python -m pip install -q optuna
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) tunelab.db tunelab.db-wal tunelab.db-shm
