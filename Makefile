# dq-registry: `make run` serves the registry with demo data; `make test` lints and tests.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Django 6 needs Python 3.12 or newer: take the first one found.
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 python3 \
	$$HOME/.pyenv/versions/3.1[2-9]*/bin/python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' \
	2>/dev/null && { command -v $$p; break; }; done)

.PHONY: run test lint format migrate demo venv bench-ingest bench-evaluate bench-import bench-client bench-admin

$(BIN)/.installed: requirements/base.txt requirements/dev.txt
	@test -n "$(PYTHON)" || { echo "error: Python 3.12+ not found (Django 6 needs it); set PYTHON=/path/to/python3.12" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	@touch $@

venv: $(BIN)/.installed

migrate: venv
	$(BIN)/python manage.py migrate --no-input

demo: migrate
	$(BIN)/python manage.py load_demo
	$(BIN)/python manage.py evaluate
	$(BIN)/python manage.py ensure_admin

run: demo
	@echo "dq-registry at http://127.0.0.1:8000/admin/ (API docs at /api/docs)"
	$(BIN)/python manage.py runserver 127.0.0.1:8000

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest

# POST /api/v1/readings under gunicorn against PostgreSQL: 500-reading batches and single
# POSTs from 8 clients, against a psycopg COPY and a naive DRF peer (BENCH_POSTGRES_URL,
# else DATABASE_URL, else local postgres; a throwaway database bench_ingest).
bench-ingest: venv
	$(BIN)/python bench/bench_ingest.py

# dqclient: the middleware's added latency (p50/p99) with a healthy and a stalled registry.
bench-client: venv
	$(BIN)/python bench/bench_client.py

# import_content: 10,000 generated documents in the sample's format, imported and re-imported
# on SQLite and on PostgreSQL (BENCH_POSTGRES_URL, else DATABASE_URL, else local postgres).
bench-import: venv
	$(BIN)/python bench/bench_import.py

# evaluation on PostgreSQL: 10M readings (generate_series, kept in the database bench_evaluate
# on BENCH_POSTGRES_URL's server), 4,000 thresholds at 15 min and 24 h and 4,000 baselines,
# each next to one hand-written percentile_cont query. BENCH_ARGS="--fresh --brin" to redo.
bench-evaluate: venv
	$(BIN)/python bench/bench_evaluate.py $(BENCH_ARGS)

# admin: 1,000,000 readings on PostgreSQL (BENCH_POSTGRES_URL, else DATABASE_URL, else local
# postgres); times the Reading changelist, every route page, a change page and /board
# against 300 ms. The database bench_admin_<name> is kept; `--reload` rebuilds it.
bench-admin: venv
	$(BIN)/python bench/bench_admin.py
