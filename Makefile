# Knobs: thin wrappers a newcomer can read. `make demo` and `make test` are all you need.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATASET ?= ml-latest-small
BUNDLE ?= bundles/$(DATASET)
# ml-latest-small's reports sit in reports/, every other dataset's in reports/<dataset>/.
# Small data is compared over 5 folds of users; goodbooks-10k (29k users) on one 80/10/10
# split, whose 2,900 test users are enough.
ifeq ($(DATASET),ml-latest-small)
REPORTS ?= reports
SPLIT ?= --split folds --folds 5
else
REPORTS ?= reports/$(DATASET)
SPLIT ?= --split holdout
endif

# Real data: ../shared/datasets when it is there (these machines have no internet);
# otherwise the loaders download from GroupLens into data/. Set KNOBS_DATA_DIR to override.
SHARED_DATA := $(abspath ../shared/datasets)
ifeq ($(origin KNOBS_DATA_DIR), undefined)
ifneq ($(wildcard $(SHARED_DATA)),)
export KNOBS_DATA_DIR := $(SHARED_DATA)
endif
endif

.PHONY: install frontend browser demo data bundle migrate test lint report steering bench \
	perf durability vocabulary clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch is pinned: 2.13.0 CPU (a local wheel here; see README for CUDA).
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# htmx comes from the npm package htmx.org pinned in package.json / package-lock.json,
# copied into static/vendor/ (generated, not committed).
static/vendor/htmx.min.js: package.json package-lock.json
	npm ci --no-audit --no-fund
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx.min.js

frontend: static/vendor/htmx.min.js

# The browser tests drive Debian's Chromium (package chromium) through Playwright.
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium || \
	  (apt-get update -q && apt-get install -y -q chromium); \
	else sudo apt-get install -y -q chromium; fi

browser: $(CHROMIUM)

# The HTTP benchmark drives the server with wrk (Debian's package wrk).
WRK ?= /usr/bin/wrk
$(WRK):
	if [ "$$(id -u)" = 0 ]; then apt-get install -y -q wrk || \
	  (apt-get update -q && apt-get install -y -q wrk); \
	else sudo apt-get install -y -q wrk; fi

data: install
	$(BIN)/knobs data --dataset $(DATASET)

$(BUNDLE)/manifest.json: | $(VENV)/.installed
	$(BIN)/knobs train --dataset $(DATASET) --out $(BUNDLE)

bundle: $(BUNDLE)/manifest.json

# The database: SQLite at data/knobs.db unless KNOBS_DATABASE_URL names another
# (postgresql+psycopg://user@host/db for several replicas).
migrate: install
	$(BIN)/alembic upgrade head

# Trains a bundle if there is none, migrates, then serves the app on http://127.0.0.1:8000.
demo: data bundle frontend migrate
	$(BIN)/knobs serve --bundle $(BUNDLE) --host 127.0.0.1 --port 8000

lint: install
	$(BIN)/ruff check app models tests benchmarks experiments migrations
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

test: lint frontend browser
	KNOBS_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest

# Regenerate $(REPORTS)/quality.{json,md}: every model on the same test users (about 10
# minutes on 2 cores for ml-latest-small's 5 folds).
report: install
	$(BIN)/knobs evaluate --dataset $(DATASET) $(SPLIT) --no-progress \
	  --json $(REPORTS)/quality.json --md $(REPORTS)/quality.md

# Regenerate $(REPORTS)/steering.{json,md,png}: labels and steering toward concepts (about
# 8 minutes on 2 cores for ml-latest-small).
steering: install
	$(BIN)/knobs steer-eval --dataset $(DATASET) $(SPLIT) --no-progress \
	  --json $(REPORTS)/steering.json --md $(REPORTS)/steering.md \
	  --plot $(REPORTS)/steering.png

# goodbooks-10k's concept vocabulary: what the shelf filter keeps
# -> reports/goodbooks-10k/vocabulary.{json,md} (about 30 s).
vocabulary: install
	$(BIN)/python -m benchmarks.book_vocabulary

# Benchmarks that write reports/: training wall time, the SAE augmentation ablation, the
# trained/untrained SAE and code-refit controls, ELSA variants against EASE, and the
# cost of a knob change, the labels' sensitivity on the demo bundle, the SAE's shape and
# the refit's metric (about 70 minutes in all on 2 cores).
bench: install bundle
	$(BIN)/python benchmarks/train_time.py --dataset $(DATASET)
	$(BIN)/python -m benchmarks.sae_augmentation --dataset $(DATASET)
	$(BIN)/python -m benchmarks.sae_untrained --dataset $(DATASET)
	$(BIN)/python -m benchmarks.elsa_variants --dataset $(DATASET)
	$(BIN)/python -m benchmarks.steering_latency --bundle $(BUNDLE)
	$(BIN)/python -m benchmarks.label_sensitivity --bundle $(BUNDLE)
	$(BIN)/python -m benchmarks.label_floor --bundle $(BUNDLE)
	$(BIN)/python -m benchmarks.sae_variants --dataset $(DATASET) --variants k32,k48 --ranking-only
	$(BIN)/python -m benchmarks.refit_metric --dataset $(DATASET)

# Serving speed (in process and over HTTP with wrk) -> reports/performance.{json,md}
# (about 4 minutes); the event log under load and SIGKILL, on SQLite and on PostgreSQL
# at KNOBS_TEST_POSTGRES -> reports/durability.{json,md} (about 4 minutes).
perf: install bundle $(WRK)
	$(BIN)/python -m benchmarks.performance --bundle $(BUNDLE)

durability: install bundle
	$(BIN)/python -m benchmarks.durability --bundle $(BUNDLE)

clean:
	rm -rf $(VENV) bundles .pytest_cache .mypy_cache .ruff_cache
