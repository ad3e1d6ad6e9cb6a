# The service's image: uvicorn workers serving app:app on port 8000, meant to sit behind nginx
# (compose.yaml runs it with PostgreSQL, Redis and nginx; README, "Docker Compose"). It carries the
# web app's build too (frontend/dist, the app's FRONTEND_DIST), so the image alone serves the SPA.
#   docker build -t authservice .                  # the last stage, the app: the default target
#   docker build --target web -t authservice-web . # nginx with deploy/nginx.compose.conf and the same build
#   docker run --rm --env-file <settings> authservice python manage.py migrate   # migrations: a separate run
#   docker run -d --env-file <settings> -p 127.0.0.1:8000:8000 authservice
# No setting and no secret is baked in: SECRET_KEY, DATABASE_URL, ALLOWED_HOSTS and the rest come from
# the environment when a container starts (.env.example lists them), and the app refuses to start
# without SECRET_KEY. No Docker engine runs where this project is tested, so `docker build` has never
# run on this file here: tests/system/test_deploy_files.py checks it statically.

# --- spa: the web app (frontend/), built once for both the app's image and nginx's
FROM node:20-slim AS spa

WORKDIR /src/frontend
# What npm reads first, so this layer is rebuilt when the dependencies change, not when the sources
# do. `npm install --no-save`, as the Makefile's `spa` target does: it installs what package-lock.json
# pins and changes nothing; `npm ci` refuses the lock because Vite 8.4's Windows-only optional
# dependency is missing from the registry this project is built against.
COPY frontend/package.json frontend/package-lock.json frontend/.npmrc ./
RUN npm install --no-audit --no-fund --no-save
# the sources (.dockerignore keeps node_modules/ and dist/ out, so the install above stays)
COPY frontend/ ./
# the type check (vue-tsc), then dist/: index.html, favicon.svg, hashed files under assets/
RUN npm run build

# --- build: the dependencies, into a virtualenv that the runtime stage copies without the build's leftovers
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what pip reads (README.md is pyproject's `readme`), so this layer is rebuilt when the
# dependencies change, not when the code does. The project installs no modules of its own
# (pyproject: packages = []): `pip install .` installs its runtime dependencies, without the dev extras.
COPY pyproject.toml README.md ./
RUN pip install .

# --- web: nginx for compose.yaml, serving the same build in front of the app (deploy/nginx.compose.conf,
# whose `root` is where the build goes). Before the app's stage: the last stage is the default target.
FROM nginx:1.30-alpine AS web
COPY deploy/nginx.compose.conf /etc/nginx/conf.d/default.conf
COPY --from=spa /src/frontend/dist /usr/share/nginx/authservice

# --- runtime: the app (the default target)
FROM python:3.11-slim AS runtime

# Logs reach `docker logs` as they are written; the code is compiled below, by root, once.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    WEB_CONCURRENCY=2

# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it and a mounted volume's owner is
# known in advance. /data is its one writable directory, for a SQLite file if PostgreSQL is not used
# (DATABASE_URL=sqlite:///data/db.sqlite3 with a volume there); the code stays root's, read-only to it.
RUN groupadd --system --gid 10001 authservice \
    && useradd --system --uid 10001 --gid authservice --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin authservice \
    && mkdir /data && chown authservice:authservice /data

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY app.py manage.py middleware.py settings.py ./
COPY apps ./apps
# settings.FRONTEND_DIST's default (BASE_DIR/frontend/dist): the app serves the web app at / on its own
COPY --from=spa /src/frontend/dist ./frontend/dist
RUN python -m compileall -q /app

USER 10001:10001
EXPOSE 8000

# Liveness only (/health asks nothing of the database): an outage of PostgreSQL must not get the
# workers restarted, which would not help; GET /ready is the readiness probe for a load balancer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]

# Migrations are not run here: with several containers they would race, and a deploy should apply
# them once, on purpose (`docker compose run --rm app python manage.py migrate`, or compose.yaml's
# one-shot migrate service). `exec` makes uvicorn PID 1, so `docker stop`'s SIGTERM reaches it and
# the workers finish their requests. --proxy-headers: the client address and scheme come from the
# proxy's X-Forwarded-For and X-Forwarded-Proto, trusted only from FORWARDED_ALLOW_IPS (uvicorn reads
# it from the environment; default 127.0.0.1). The app writes its own access log (ACCESS_LOG).
CMD ["sh", "-c", "exec uvicorn app:app --host 0.0.0.0 --port 8000 --workers \"$WEB_CONCURRENCY\" --proxy-headers --no-access-log"]
