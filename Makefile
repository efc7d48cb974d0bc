# Two commands set everything up on a fresh machine:
#   make demo   install into .venv and run tunelab's main job (a real study, stored in SQLite)
#   make test   install into .venv and run the linters, the type checker, the layer contract and the tests
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test chromium bench bench-transfer bench-deterministic bench-discrete bench-storage bench-suite bench-model bench-multifidelity bench-multifidelity-mo bench-reporting bench-recipe bench-sweep bench-priors bench-hypergradient bench-integrations bench-multiobjective bench-heldout install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The main job needs tunelab, PyTorch (CPU) and scikit-learn; the tests also need the dev tools,
# the database drivers and Ray. TORCH pins the PyTorch build (2.13.0: a CPU wheel on this machine).
TORCH ?= torch==2.13.0

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[demo]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[dev,demo]"
	touch $@ $(VENV)/.demo-installed

install: $(VENV)/.dev-installed

demo: $(VENV)/.demo-installed
	OMP_NUM_THREADS=1 $(BIN)/tunelab recipe --storage sqlite:///tunelab.db

# The report's browser test drives Debian's chromium (never a browser downloaded by a test tool):
# installed here when missing and possible (root with apt-get); under CI=true the test fails without it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
		  apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
		echo "note: chromium is not installed (apt-get install chromium); the report's browser test needs it"

test: $(VENV)/.dev-installed chromium
	$(BIN)/ruff check src tests benchmarks examples docs/ext
	$(BIN)/mypy
	$(BIN)/lint-imports
	OMP_NUM_THREADS=1 $(BIN)/pytest -q

# The benchmark has its own virtualenv: Optuna is compared against, never a dependency of tunelab.
# Pass options with BENCH_ARGS, e.g. `make bench BENCH_ARGS=--quick`.
BENCH_VENV ?= .venv-bench

$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e . "optuna==5.0.0"
	touch $@

bench: $(BENCH_VENV)/.installed
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/overhead.py $(BENCH_ARGS)

# The storage benchmark also needs a PostgreSQL driver in the benchmark's virtualenv, and a server
# (default postgresql+psycopg://postgres@127.0.0.1:5432/test; pass --pg-url in BENCH_ARGS for another).
$(BENCH_VENV)/.psycopg: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m pip install -q "psycopg[binary]>=3.1"
	touch $@

bench-storage: $(BENCH_VENV)/.psycopg
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/storage.py $(BENCH_ARGS)

# The sample-efficiency suite's problems need scikit-learn and PyTorch (CPU); Optuna's GPSampler
# uses greenlet for its batched L-BFGS-B (without it, a sequential loop 2-3x slower).
$(BENCH_VENV)/.suite: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m pip install -q "scikit-learn>=1.3" "torch==2.13.0" "greenlet>=3"
	touch $@

bench-suite: $(BENCH_VENV)/.suite
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/suite.py $(BENCH_ARGS)

# Per-trial cost of the TPE and GP samplers next to Optuna's (targets: at most half).
bench-model: $(BENCH_VENV)/.suite
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/model_overhead.py $(BENCH_ARGS)

# Warm starts: a GP learning from an earlier, related (or unrelated) study, next to Optuna's GP with
# the earlier study's top 5 enqueued. And the wall-clock cost of a deterministic study.
bench-transfer: $(BENCH_VENV)/.suite
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/transfer.py $(BENCH_ARGS)

bench-discrete: $(BENCH_VENV)/.installed
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/discrete.py $(BENCH_ARGS)

bench-deterministic: $(BENCH_VENV)/.installed
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/deterministic.py $(BENCH_ARGS)

# Early stopping on a PyTorch MLP on digits, epochs as the resource: random search, tunelab's and
# Optuna's median/ASHA/Hyperband pruners, ASHA with TPE, PBT, at the same epoch budget.
bench-multifidelity: $(BENCH_VENV)/.suite
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/multifidelity.py $(BENCH_ARGS)

# Pareto early stopping: Pareto ASHA and the Pareto median rule against unpruned random search (and Optuna's
# random and NSGA-II, which cannot prune with two objectives) on a digits MLP, val error vs parameter count.
bench-multifidelity-mo: $(BENCH_VENV)/.suite
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/multifidelity_mo.py --seeds 15 $(BENCH_ARGS)

# What reporting costs inside a training loop (a CNN on digits): tunelab's Reporter every epoch and
# every 10 steps, and Optuna's report + should_prune, against the same loop that reports nothing
# (target: at most 1% of the loop's time).
bench-reporting: $(BENCH_VENV)/.suite
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/reporting_overhead.py $(BENCH_ARGS)

# The main job measured: the recipe's default run on the digits CNN (target: >= 97% validation
# accuracy in <= 10 minutes), next to random search and Optuna TPE + median pruning at equal epochs.
bench-recipe: $(BENCH_VENV)/.suite
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/recipe.py $(BENCH_ARGS)

# What `tunelab sweep` costs per trial beyond the script's own run (process start measured apart), one
# tunelab.script.report() (target: <= 1 ms, <= 1% of a small training loop), next to Optuna's ask/tell CLI
# driving the same script from a shell loop.
bench-sweep: $(BENCH_VENV)/.suite
	OMP_NUM_THREADS=1 PATH="$(abspath $(BENCH_VENV))/bin:$$PATH" $(BENCH_VENV)/bin/python benchmarks/sweep.py $(BENCH_ARGS)

# Priors from the user (issue 21): GP and TPE with no prior, a good one and a misleading one, and random search,
# on three synthetic problems (targets: a good prior reaches the no-prior final regret in half the trials; a
# misleading one ends no worse than random search).
bench-priors: $(BENCH_VENV)/.installed
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/priors.py $(BENCH_ARGS)

# plotly and kaleido, for benchmarks that draw a figure.
$(BENCH_VENV)/.report: $(BENCH_VENV)/.suite
	$(BENCH_VENV)/bin/python -m pip install -q -e ".[report]"
	touch $@

# The learning rate tuned by gradient: HypergradientOptimizer from 7 starts (1e-5..1e-1) against the fixed
# rates, on the digits CNN and an MLP, SGD and Adam, 5 seeds (targets: within 1 point of the best fixed rate
# for starts within 2 decades of it, never below the same start's fixed run, <= 5% cost per step).
# BENCH_ARGS=--quick: 2 seeds, 8 epochs.
bench-hypergradient: $(BENCH_VENV)/.report
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/hypergradient.py --figure docs/img/hypergradient-lr-paths.svg $(BENCH_ARGS)

# The framework integrations next to optuna-integration's: each callback's cost per report and its share of a
# small training loop (targets: at most Optuna's, under 1%), and TunelabSearchCV against RandomizedSearchCV and
# OptunaSearchCV at equal budget. BENCH_ARGS=--quick: a short run.
$(BENCH_VENV)/.integrations: $(BENCH_VENV)/.suite
	$(BENCH_VENV)/bin/python -m pip install -q "optuna-integration==5.0.0" "lightning==2.6.6" "transformers==5.25.0" \
		"accelerate==1.16.0" "keras==3.15.1" "xgboost-cpu==3.2.0" "lightgbm==4.7.0" "pandas>=2"
	touch $@

bench-integrations: $(BENCH_VENV)/.integrations
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/integrations.py $(BENCH_ARGS)

# The learning-curve model on held-out published curves: LCDB 1.0's validation accuracy curves (20 scikit-learn
# learners on OpenML datasets, shipped in its PyPI package; installed without its dependencies, which would pull
# openml): the final value predicted from part of each curve, and LearningCurvePruner replaying the learners.
$(BENCH_VENV)/.lcdb: $(BENCH_VENV)/.integrations
	$(BENCH_VENV)/bin/python -m pip install -q --no-deps "lcdb==0.1.0"
	touch $@

bench-heldout: $(BENCH_VENV)/.lcdb
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/heldout_curves.py $(BENCH_ARGS)

# Several objectives: tunelab's NSGA-II, TPE, Auto and random next to Optuna's NSGA-II, TPE, GP and random on
# ZDT1/2/6, DTLZ2 and the constrained SRN (hypervolume at 50/100/200 trials; BENCH_ARGS=--quick: a short run).
bench-multiobjective: $(BENCH_VENV)/.suite
	OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/multiobjective.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) tunelab.db tunelab.db-wal tunelab.db-shm tunelab.db.artifacts
