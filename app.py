"""The ASGI application: `uvicorn app:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Route
from tortoise.contrib.starlette import RegisterTortoise

import settings
from apps.admin.urls import routes as admin_routes
from apps.core import database, health, lifecycle, metrics, spa
from apps.core.errors import EXCEPTION_HANDLERS
from apps.core.logs import configure_logging
from apps.core.openapi import docs_routes
from apps.user.problems import EXCEPTION_HANDLERS as ACCOUNT_EXCEPTION_HANDLERS
from apps.user.urls import routes as user_routes
from apps.user.urls import well_known_routes
from middleware import (
    AllowedHostsMiddleware,
    JWTAuthenticationBackend,
    MetricsMiddleware,
    ProblemCORSMiddleware,
    RequestContextMiddleware,
    authentication_failed,
)


def include(prefix: str, routes: list[Route]) -> list[Route]:
    """Django's include(): an app's urls under a prefix. Flat routes rather than a Mount, so a request
    is matched once, not by two routers (this is on every request's path)."""
    return [Route(prefix + r.path, r.endpoint, methods=r.methods, name=r.name) for r in routes]


API_VERSION = "1.0.0"


def create_app(tortoise_config: dict | None = None) -> Starlette:
    """Build the app; `tortoise_config` defaults to settings.TORTOISE_ORM (tests pass their own)."""
    configure_logging()
    metrics.configure()
    # a request never waits long on a database that is away: it is answered 503 (database.bounded)
    config = database.bounded(tortoise_config or settings.TORTOISE_ORM, settings.DATABASE_TIMEOUT)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database.create_sqlite_file(config)
        async with RegisterTortoise(app, config=config), lifecycle.running():
            yield

    middleware = [
        Middleware(RequestContextMiddleware),
        # only when on: off, metrics cost a request nothing, not even a layer
        *([Middleware(MetricsMiddleware, allowed=settings.METRICS_ALLOWED_IPS)] if metrics.enabled() else []),
        Middleware(
            AllowedHostsMiddleware, allowed_hosts=settings.ALLOWED_HOSTS, any_host_paths=health.PROBE_PATHS
        ),
        Middleware(
            ProblemCORSMiddleware,
            allow_origins=settings.CORS_ALLOWED_ORIGINS,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID", "X-Token-Transport"],
            expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate"],
            # The cookie transport (apps/user/transport.py) needs credentialed CORS; only the listed
            # origins get it (never "*": settings refuse it).
            allow_credentials=True,
            max_age=600,
        ),
        Middleware(
            AuthenticationMiddleware, backend=JWTAuthenticationBackend(), on_error=authentication_failed
        ),
    ]
    routes = [
        *include("/user", user_routes),
        Route("/health", health.health, methods=["GET"]),
        Route("/ready", health.ready, methods=["GET"]),
        *include("/admin", admin_routes),
        *include("/.well-known", well_known_routes),
    ]
    if settings.API_DOCS:
        routes += docs_routes(routes, title="authservice", version=API_VERSION)
    # debug=False always: errors.py renders tracebacks itself, as problem+json, when DEBUG is on.
    application = Starlette(
        debug=False,
        routes=routes,
        middleware=middleware,
        exception_handlers={**EXCEPTION_HANDLERS, **ACCOUNT_EXCEPTION_HANDLERS},
        lifespan=lifespan,
    )
    spa.mount(application, settings.FRONTEND_DIST)  # what no API route took
    return application


app = create_app()
