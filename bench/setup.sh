#!/usr/bin/env bash
# The peers' own virtual environment (bench/.peers, git-ignored): a bare Starlette and fastapi-users
# (latest) with SQLAlchemy on aiosqlite and asyncpg. Never installed into the project's .venv.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .peers
.peers/bin/python -m pip install --quiet --upgrade pip
.peers/bin/python -m pip install --quiet --upgrade starlette "uvicorn[standard]" "fastapi-users[sqlalchemy]" \
    aiosqlite asyncpg
echo "peers installed in bench/.peers"
