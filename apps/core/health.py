"""Liveness and readiness, for an orchestrator or a load balancer (both answer whatever the Host
header: a probe comes by IP; AllowedHostsMiddleware lets these two paths through).

- /health: the process answers. No database call, so a database outage does not get the process
  restarted, which would not help.
- /ready: the database answers within READY_TIMEOUT and every migration on disk is applied, so
  traffic is sent only to a process that can serve it (503 + Retry-After otherwise).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise import connections

import settings
from apps.core.errors import ServiceUnavailable, problem_from
from apps.core.openapi import operation

logger = logging.getLogger("apps.core.health")

PROBE_PATHS = frozenset({"/health", "/ready"})
READY_TIMEOUT = 2.0  # seconds: a probe must not hang on a database that does not answer


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready"]


@operation("Liveness: the process answers", response=HealthOut, tags=("health",))
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def migrations_on_disk() -> set[tuple[str, str]]:
    """(app label, migration name) of every migration file of the installed Tortoise apps."""
    found = set()
    for label, app in settings.TORTOISE_ORM["apps"].items():
        module = app.get("migrations")
        if not module:
            continue
        folder = Path(settings.BASE_DIR, *module.split("."))
        found |= {(label, path.stem) for path in folder.glob("[0-9][0-9][0-9][0-9]_*.py")}
    return found


_all_applied = False  # once true, stays true for this process: migrations are not un-applied under it


async def _check() -> str | None:
    """None when ready, else what is missing (for the log, never the response)."""
    global _all_applied
    connection = connections.get("default")
    if _all_applied:
        await connection.execute_query("SELECT 1")
        return None
    _, rows = await connection.execute_query("SELECT app, name FROM tortoise_migrations")
    missing = migrations_on_disk() - {(row["app"], row["name"]) for row in rows}
    if missing:
        return f"{len(missing)} migration(s) not applied"
    _all_applied = True
    return None


@operation(
    "Readiness: the database answers and every migration is applied",
    response=ReadyOut,
    errors=(503,),
    tags=("health",),
)
async def ready(request: Request) -> Response:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            missing = await _check()
    except Exception as exc:  # unreachable, timed out, or no migration table yet: not ready
        missing = type(exc).__name__
    if missing is not None:
        logger.warning("not ready: %s", missing)
        return problem_from(ServiceUnavailable("Not ready: the database is unreachable or not migrated."))
    return JSONResponse({"status": "ready"})
