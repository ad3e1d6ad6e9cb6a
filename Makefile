# Two commands from a fresh clone: `make run` and `make test`. Needs Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install spa dev run test test-system test-soak lint migrate bench

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

# The web app (frontend/): `npm ci` once, `npm run build` when its sources are newer than the build.
# Without Node.js the API is served alone, and / says how to get the web app.
spa:
	@if [ ! -f frontend/package.json ]; then exit 0; fi; \
	if ! command -v npm >/dev/null 2>&1; then \
	  echo "Node.js not found: serving the API only (install Node.js 20+ and npm for the web app)"; exit 0; fi; \
	[ -d frontend/node_modules ] || (cd frontend && npm ci --no-audit --no-fund); \
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

lint: install
	$(BIN)/ruff check .

# The benchmark (bench/run.py): needs wrk (apt-get install wrk) and PostgreSQL on 127.0.0.1:5432.
bench/.peers/.installed: bench/setup.sh
	bench/setup.sh
	touch $@

bench: install bench/.peers/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)
