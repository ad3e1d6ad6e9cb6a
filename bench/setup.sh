#!/usr/bin/env bash
# The peers, each in a virtual environment of its own under bench/.peers/<peer> (git-ignored), at the
# latest releases on PyPI. Never installed into the project's .venv; re-run by `make bench` whenever
# this file changes (the Makefile's stamp bench/.peers/.installed depends on it).
#
#   bare           Starlette hello-world (the ceiling every ratio is measured against)
#   blacksheep     BlackSheep hello-world (a second ceiling)
#   fastapi-users  fastapi-users, JWT strategy + bearer transport, SQLAlchemy (aiosqlite, asyncpg)
#   django         Django + DRF + djangorestframework-simplejwt (gunicorn sync and uvicorn ASGI;
#                  argon2-cffi for the like-for-like login row; psycopg for PostgreSQL)
#   litestar       Litestar JWTAuth + advanced-alchemy (SQLAlchemy async: aiosqlite, asyncpg)
#   utilmeta       UtilMeta (its user/login tutorial: Django ORM, session auth)
#
# `bench/setup.sh PEER...` (re)installs only those.
set -euo pipefail
cd "$(dirname "$0")"
# the service's own interpreter by default, so that peers and service run on the same Python
if [ -z "${PYTHON:-}" ]; then
    if [ -x ../.venv/bin/python ]; then PYTHON=../.venv/bin/python; else PYTHON=python3; fi
fi
# the single shared venv of earlier versions of this script
if [ -f .peers/pyvenv.cfg ]; then rm -rf .peers/bin .peers/include .peers/lib .peers/lib64 .peers/pyvenv.cfg; fi

declare -A PACKAGES=(
    [bare]='starlette uvicorn[standard]'
    [blacksheep]='blacksheep uvicorn[standard]'
    [fastapi-users]='fastapi-users[sqlalchemy] aiosqlite asyncpg uvicorn[standard]'
    [django]='django djangorestframework djangorestframework-simplejwt argon2-cffi psycopg[binary,pool] gunicorn uvicorn[standard]'
    [litestar]='litestar[jwt] advanced-alchemy aiosqlite asyncpg argon2-cffi uvicorn[standard]'
    [utilmeta]='utilmeta django psycopg[binary] gunicorn'
)
ORDER=(bare blacksheep fastapi-users django litestar utilmeta)

peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=("${ORDER[@]}")
for peer in "${peers[@]}"; do
    [ -n "${PACKAGES[$peer]:-}" ] || { echo "unknown peer: $peer (one of: ${ORDER[*]})" >&2; exit 2; }
    rm -rf ".peers/$peer"
    "$PYTHON" -m venv ".peers/$peer"
    ".peers/$peer/bin/python" -m pip install --quiet --upgrade pip
    # shellcheck disable=SC2086  # the list is split on purpose
    ".peers/$peer/bin/python" -m pip install --quiet --upgrade ${PACKAGES[$peer]}
    echo "bench/.peers/$peer: $(".peers/$peer/bin/python" -m pip freeze | tr '\n' ' ')"
done
