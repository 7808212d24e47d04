# Charter: `make run` serves the API, `make test` proves it. Both set everything up first.
PYTHON ?= python3
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
export PYTHONDONTWRITEBYTECODE := 1
# Redocly CLI: no usage data sent, no update check (nothing but the package registries is reachable).
export REDOCLY_TELEMETRY := off
export REDOCLY_SUPPRESS_UPDATE_NOTICE := true

.PHONY: run test lint migrate fuzz bench spec docs sdk spec-diff chaos image-smoke clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## run: set up, migrate the default SQLite database under var/, build the docs, serve on http://127.0.0.1:$(PORT) with one job worker (charter serve --with-worker)
run: $(BIN)/.installed migrate docs
	$(BIN)/charter serve --host 127.0.0.1 --port $(PORT) --with-worker

## migrate: apply every Alembic migration to DATABASE_URL (default sqlite:///var/charter.db)
migrate: $(BIN)/.installed
	$(BIN)/charter migrate

## spec: write the bundled contract to build/openapi.json
spec: $(BIN)/.installed
	$(BIN)/python -m server.contract --out build/openapi.json

## docs: the Redoc reference page (one self-contained HTML file, no CDN) from the bundled contract, served at /api/v1/docs
docs: node_modules/.installed spec
	npx --no-install redocly build-docs build/openapi.json --inlineBundle --title "Charter API reference" --output build/docs/index.html

## sdk: a Python client (openapi-python-client) and TypeScript types (openapi-typescript) in build/sdk/; any warning fails
sdk: $(BIN)/.installed node_modules/.installed spec
	$(BIN)/python scripts/sdk.py

## spec-diff: fail on a breaking change to the contract since SPEC_BASE (default: last tag, else origin/main's merge base, else HEAD~1) unless info.version's major changed
SPEC_BASE ?=
spec-diff: $(BIN)/.installed node_modules/.installed
	$(BIN)/python scripts/spec_diff.py $(if $(SPEC_BASE),--base $(SPEC_BASE))

## lint: ruff on the code; mypy --strict on services, persistence, adapters ([tool.mypy]); the import layers (import-linter, [tool.importlinter]); hadolint on the Dockerfile (0 warnings); compose.yaml against the Compose specification and our rules (scripts/check_compose.py); Spectral (spectral:oas + OWASP) and Redocly (`all` rules, redocly.yaml) on the bundled contract
lint: $(BIN)/.installed node_modules/.installed spec
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy services persistence adapters jobs
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold info Dockerfile
	$(BIN)/python scripts/check_compose.py compose.yaml
	npx --no-install spectral lint build/openapi.json --fail-severity=warn
	npx --no-install redocly lint build/openapi.json --max-problems 1000

## test: set up, lint, check for breaking changes, build the docs, fuzz, then run the whole suite (SQLite, or PostgreSQL when DATABASE_URL names it)
## (the suite runs last so its summary line is the last thing printed: CI reads it)
test: lint spec-diff docs
	$(MAKE) --no-print-directory fuzz
	$(BIN)/pytest

## chaos: the fault suite (tests/chaos and the killed-worker test, marked `chaos`): its own PostgreSQL cluster (initdb + pg_ctl in a temp folder, free port) restarted under writers, its own redis-server stopped and started, a worker SIGKILLed mid-job, SMTP, the answer provider and clamd refusing and hanging; the slow ones (CHARTER_CHAOS=all) included. The quick ones also run in `pytest`
chaos: $(BIN)/.installed
	CHARTER_CHAOS=all $(BIN)/pytest -m chaos tests/chaos tests/jobs/test_worker_processes.py

## fuzz: schemathesis CLI (all checks, 100 examples per operation) against a server it starts and stops
fuzz: $(BIN)/.installed
	$(BIN)/python scripts/fuzz.py --examples 100

## bench: the hot path against the references, edge middleware cost, session check, tasks at 10k and 1M, jobs through the queue and reminder lateness, knowledge search, pages crawled per second, documents processed per minute, and answers per second and time to first delta (extractive and openai on a fake server, next to health), streamed answers over HTTP (PostgreSQL and Redis), cached answers beside uncached ones (the answer cache off, in memory, in Redis), and a page of 100 tasks with and without gzip (installs wrk when missing)
BENCH_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
bench: $(BIN)/.installed
	scripts/install_wrk.sh
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.hot_path
	$(BIN)/python -m bench.edge_cost
	$(BIN)/python -m bench.session_check
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.session_check
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.tasks_scale
	$(BIN)/python -m bench.jobs
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.jobs
	$(BIN)/python -m bench.knowledge_search
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.knowledge_search
	$(BIN)/python -m bench.knowledge_ingest
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.knowledge_ingest
	$(BIN)/python -m bench.answers
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.answers
	$(BIN)/python -m bench.answer_stream
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.answer_stream
	$(BIN)/python -m bench.compression
	$(BIN)/python -m bench.answer_cache
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.answer_cache

## image-smoke: build the image with buildah (its base made from Debian's packages with mmdebstrap unless BASE names one) and run migrate, serve, worker and the README flow in it (root; apt-get install -y buildah mmdebstrap)
BASE ?=
image-smoke: $(BIN)/.installed
	$(BIN)/python scripts/image_smoke.py $(if $(BASE),--base $(BASE))

## clean: remove the environment, installed tools, local state and caches
clean:
	rm -rf $(VENV) node_modules var build .pytest_cache .ruff_cache .mypy_cache .hypothesis .schemathesis test-artifacts *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
