# Two commands from a fresh clone: `make run` and `make test`. Needs Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install spa dev run test test-system test-soak test-spa lint migrate bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# A development .env, made once: DEBUG on and a random SECRET_KEY that survives restarts.
.env:
	$(BIN)/python scripts/make_dev_env.py

migrate: install .env
	$(BIN)/python manage.py migrate

# The web app (frontend/): `npm install --no-save` once (it installs what package-lock.json pins and
# changes nothing; `npm ci` refuses the lock because Vite's Windows-only optional dependency is missing
# from the registry), `npm run build` when its sources are newer than the build.
# Without Node.js the API is served alone, and / says how to get the web app.
spa:
	@if [ ! -f frontend/package.json ]; then exit 0; fi; \
	if ! command -v npm >/dev/null 2>&1; then \
	  echo "Node.js not found: serving the API only (install Node.js 20+ and npm for the web app)"; exit 0; fi; \
	[ -d frontend/node_modules ] || (cd frontend && npm install --no-audit --no-fund --no-save); \
	if [ ! -f frontend/dist/index.html ] || [ -n "$$(find frontend/src frontend/index.html frontend/package.json \
	    -newer frontend/dist/index.html 2>/dev/null | head -n1)" ]; then (cd frontend && npm run build); fi

run: migrate spa
	$(BIN)/python -m uvicorn app:app --host $(HOST) --port $(PORT) --no-access-log

# Development: the API with --reload on :8000 and Vite's dev server on http://localhost:5173 (which
# forwards the API's paths to :8000), the mail links pointing at Vite. Ctrl-C stops both.
dev: migrate
	scripts/dev.sh $(BIN)/python $(HOST) $(PORT)

# The fast suite (a few minutes): unit, HTTP and the live-server system tests.
test: install
	$(BIN)/python -m pytest tests/unit tests/http tests/system -m "not system"

# The deployment: Debian's nginx with deploy/nginx.conf before two uvicorn workers (needs nginx).
test-system: install
	$(BIN)/python -m pytest tests/system -m system

# The soak (tests/soak): SOAK_SECONDS (default 300) of mixed traffic on two uvicorn workers on
# PostgreSQL (a fresh database on TEST_DATABASE_URL's server, else 127.0.0.1:5432): no 5xx, nothing
# lost, worker memory flat. -s: its counts and memory samples are printed as it goes.
test-soak: install
	$(BIN)/python -m pytest tests/soak -m soak -s

# The web app (frontend/): install, regenerate the API client from the OpenAPI document (it must match
# the committed src/api/schema.d.ts: a contract change shows in review), the type check (vue-tsc:
# src/api/contract.ts holds request bodies as users write them), the build, and the browser suite in
# Debian's Chromium against a live API on a new SQLite file, or on E2E_DATABASE_URL (a fresh
# PostgreSQL database). Needs Node 20.19+ and chromium.
test-spa: install
	cd frontend && npm install --no-audit --no-fund --no-save && npm run gen:api \
	  && git diff --exit-code -- src/api/schema.d.ts && npm run typecheck && node scripts/audit.mjs \
	  && npm run build && npm run e2e

lint: install
	$(BIN)/ruff check .

# The benchmark (bench/run.py): needs wrk (apt-get install wrk) and PostgreSQL on 127.0.0.1:5432.
# bench/setup.sh makes each peer's venv (bench/.peers/<peer>), again whenever the script changes.
bench/.peers/.installed: bench/setup.sh
	bench/setup.sh
	touch $@

bench: install bench/.peers/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)
