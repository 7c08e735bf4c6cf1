# Every target runs inside .venv, built from pyproject.toml on first use and rebuilt only when
# pyproject.toml changes. Hydra overrides pass through ARGS, e.g.
#   make sweep ARGS="sweep.n_trials=5"      make run ARGS="model.kernel_size=5 data.window=20"
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PORT ?= 5000
UI_WORKERS ?= 1
UI_EXPERIMENT ?= ids
PG_PORT ?= 5432
HOST ?= 127.0.0.1
WORKERS ?=
TRACKING_URI ?= sqlite:///mlruns/mlflow.db
PYTEST_ARGS ?=
TEST_WORKERS ?= $(CORES)
# worksteal: a worker that runs out takes half of the busiest one's queue, so no test waits
# behind a long one (tests/conftest.py deals the long ones out first, one share per worker)
TEST_DIST ?= worksteal
MARKS ?= not slow
MODEL ?= models:/ids-cnn-bilstm@champion
SERVE_PORT ?= 5001
DOCS_PORT ?= 8000
CORES := $(shell nproc 2>/dev/null || echo 1)
# make serve: 0 workers = one per core (one for a model with host state), 0 threads = cores / workers
SERVE_WORKERS ?= 0
SERVE_THREADS ?= 0

.DEFAULT_GOAL := help
.PHONY: help venv sweep run test test-slow test-all lint format docs docs-serve ui bench promote evaluate predict serve server clean

help: ## list the targets
	@echo "Usage: make <target> [ARGS=\"hydra overrides\"]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:[^#]*## /\t/' | awk -F'\t' '{printf "  %-10s %s\n", $$1, $$2}'

# uv installs what pip would, from pip's own sources (ids/tools/pip_sources.py), in a third of
# the time; where uv cannot be had or fails, pip does it.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	{ $(BIN)/python -m pip install --quiet uv && $(BIN)/uv pip install --quiet \
		--python $(BIN)/python --compile-bytecode $$($(PYTHON) ids/tools/pip_sources.py) \
		-e '.[dev,docs]'; } || { echo "make venv: uv failed, installing with pip"; \
		$(BIN)/python -m pip install --quiet --upgrade pip && \
		$(BIN)/python -m pip install --quiet -e '.[dev,docs]'; }
	touch $(STAMP)

venv: $(STAMP) ## build .venv from pyproject.toml (other targets do it on first use)

sweep: $(STAMP) ## the main job: Optuna study over the CNN-BiLSTM (WORKERS=N for parallel workers)
	$(BIN)/python -m ids.sweep $(if $(WORKERS),sweep.workers=$(WORKERS)) $(ARGS)

run: $(STAMP) ## one training run: python -m ids.run
	$(BIN)/python -m ids.run $(ARGS)

promote: $(STAMP) ## register the study's best trial as champion and re-evaluate it on test
	$(BIN)/python -m ids.promote $(ARGS)

evaluate: $(STAMP) ## re-evaluate a model (default models:/ids-cnn-bilstm@champion)
	$(BIN)/python -m ids.evaluate $(ARGS)

predict: $(STAMP) ## score flows: ARGS="input=flows.csv output=alerts.csv" (model: champion)
	$(BIN)/python -m ids.predict $(ARGS)

test: $(STAMP) ## fast test suite: real training on tiny data, one worker per core (TEST_WORKERS=N; MARKS="slow or not slow": every test)
	$(BIN)/python -m pytest -m "$(MARKS)" -n $(TEST_WORKERS) --dist $(TEST_DIST) $(PYTEST_ARGS)

test-slow: $(STAMP) ## the slow tests: servers, PostgreSQL, killed workers, serving, processes
	$(BIN)/python -m pytest -m slow -n $(TEST_WORKERS) --dist $(TEST_DIST) $(PYTEST_ARGS)

test-all: $(STAMP) ## every test (make test + make test-slow in one run)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist $(TEST_DIST) $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check
	$(BIN)/ruff check ids tests

format: $(STAMP) ## ruff format + autofix
	$(BIN)/ruff check --fix ids tests
	$(BIN)/ruff format ids tests

# NO_MKDOCS_2_WARNING: silences the banner mkdocs-material prints about MkDocs 2 on every build.
docs: $(STAMP) ## build the documentation site into site/ (strict: broken links or names fail)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(STAMP) ## browse the documentation at http://$(HOST):$(DOCS_PORT), rebuilt on save
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr $(HOST):$(DOCS_PORT)

ui: $(STAMP) ## MLflow UI on http://$(HOST):$(PORT) for mlruns/; prints the runs table's URL (PORT=5001 to change)
	@$(BIN)/python -m ids.tracking.ui --tracking-uri "$(TRACKING_URI)" --experiment "$(UI_EXPERIMENT)" \
		--host $(HOST) --port $(PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri $(TRACKING_URI) \
		--host $(HOST) --port $(PORT) --workers $(UI_WORKERS)

server: $(STAMP) ## a team's PostgreSQL + MLflow server (HOST=0.0.0.0 to share; data in servers/)
	$(BIN)/python -m ids.tools.servers team --dir servers --host $(HOST) --port $(PORT) \
		--pg-port $(PG_PORT) $(ARGS)

# ids' own server for MLflow's scoring protocol (ids/serving/http.py): one worker per core (one
# for a model with host state), each with cores/workers kernel threads, every batch shape
# compiled before /ping answers.
serve: $(STAMP) ## serve the champion (or MODEL=...) on http://$(HOST):$(SERVE_PORT)/invocations
	$(BIN)/python -m ids.serve model_uri="$(MODEL)" tracking.uri="$(TRACKING_URI)" \
		serve.host=$(HOST) serve.port=$(SERVE_PORT) serve.workers=$(SERVE_WORKERS) \
		serve.threads=$(SERVE_THREADS) $(ARGS)

bench: $(STAMP) ## benchmarks: data prep, training/inference throughput, trial cost
	$(BIN)/python -m ids.tools.bench $(ARGS)

clean: ## remove run records, sweeps, Hydra outputs and caches (keeps .venv)
	rm -rf outputs site .pytest_cache .ruff_cache
	find mlruns sweeps -mindepth 1 ! -name README.md -exec rm -rf {} + 2>/dev/null || true
	find . -name __pycache__ -not -path './.venv/*' -exec rm -rf {} + 2>/dev/null || true
