#!/usr/bin/env bash
# `make dev`: the API (uvicorn --reload) and Vite's dev server together; Ctrl-C stops both.
# Vite serves http://localhost:5173 and forwards /user, /admin, /.well-known, /health, /ready,
# /openapi.json and /docs to the API (frontend/vite.config.ts), so the browser sees one origin.
set -euo pipefail
python=$1 host=$2 port=$3
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
  echo "make dev needs Node.js 20+ and npm (apt-get install nodejs npm, or nodejs.org)" >&2
  exit 1
fi
[ -d frontend/node_modules ] || (cd frontend && npm install --no-audit --no-fund --no-save)
FRONTEND_URL=http://localhost:5173 "$python" -m uvicorn app:app --host "$host" --port "$port" --reload &
api=$!
trap 'kill "$api" 2>/dev/null || true' EXIT INT TERM
(cd frontend && npm run dev -- --host localhost --port 5173 --strictPort)
