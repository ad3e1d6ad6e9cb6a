"""One error shape for the whole service: RFC 9457 problem details (application/problem+json).

Views raise a `Problem`; the handlers registered by `app.py` turn it, Starlette's
HTTPException (404, 405), a database that cannot be reached (503) and any unexpected exception (500)
into the same JSON shape.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

import asyncpg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise.exceptions import DBConnectionError

import settings

logger = logging.getLogger("apps.core.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"
BEARER_CHALLENGE = 'Bearer realm="api"'
NO_STORE = {"Cache-Control": "no-store"}


class Problem(Exception):
    """An error the client should see; subclasses fix status, code and title."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"
    detail: str | None = None
    headers: dict[str, str] | None = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.detail or self.title)
        if detail is not None:
            self.detail = detail
        self.errors = errors
        if headers is not None:
            self.headers = headers


class MalformedBody(Problem):
    status, code, title = 400, "malformed_body", "Malformed request body"


class NotAuthenticated(Problem):
    status, code, title = 401, "not_authenticated", "Authentication required"
    detail = "This endpoint needs an access token: Authorization: Bearer <token>."
    headers = {"WWW-Authenticate": BEARER_CHALLENGE}


class InvalidToken(Problem):
    status, code, title = 401, "invalid_token", "Invalid token"
    detail = "The access token is malformed, expired or revoked."

    def __init__(self, detail: str | None = None) -> None:
        # RFC 6750 section 3: the challenge names the error; the description is for people.
        description = (detail or self.detail).replace('"', "'")
        challenge = f'{BEARER_CHALLENGE}, error="invalid_token", error_description="{description}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class PermissionDenied(Problem):
    status, code, title = 403, "permission_denied", "Permission denied"


class NotFound(Problem):
    status, code, title = 404, "not_found", "Not found"


class Conflict(Problem):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(Problem):
    status, code, title = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(Problem):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"

    @classmethod
    def for_method(cls, method: str, detail: str) -> UnsupportedMediaType:
        """The problem, advertising what the method takes (RFC 5789 section 2.2: Accept-Patch on a
        PATCH's 415; Accept-Post, its W3C counterpart, on a POST's)."""
        name = {"PATCH": "Accept-Patch", "POST": "Accept-Post"}.get(method)
        return cls(detail, headers={name: "application/json"} if name else None)


class ValidationFailed(Problem):
    status, code, title = 422, "validation_error", "Invalid input"
    detail = "One or more fields are invalid."


class ServiceUnavailable(Problem):
    status, code, title = 503, "service_unavailable", "Service unavailable"
    detail = "The service cannot reach its database. Try again shortly."
    headers = {"Retry-After": "5"}


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    # An error may describe an account ("wrong password", "taken"): no cache keeps it (RFC 9111 5.2.2.5).
    headers = {**headers, **NO_STORE} if headers else NO_STORE
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)


def problem_from(exc: Problem) -> JSONResponse:
    return problem_response(
        exc.status, exc.code, exc.title, exc.detail, errors=exc.errors, headers=exc.headers
    )


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_from(exc)


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("not_authenticated", "Authentication required"),
    403: ("permission_denied", "Permission denied"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown route, wrong method) in the service's shape."""
    assert isinstance(exc, HTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    return problem_response(exc.status_code, code, title, detail, headers=exc.headers)


# What a database that is down, restarting, unreachable or not answering in time raises, as it reaches
# a view or a middleware: Tortoise translates only some of asyncpg's errors, and not those of taking
# a pooled connection or of BEGIN / COMMIT / ROLLBACK. The client can do nothing but try again later,
# so each is a 503, never a 500.
DATABASE_FAULTS: tuple[type[BaseException], ...] = (
    DBConnectionError,  # Tortoise's own
    OSError,  # a socket refused, reset or unresolvable; TimeoutError: connecting or a pooled connection
    asyncpg.PostgresConnectionError,  # class 08: the connection was lost or refused by the server
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, starting up, statement cut
    asyncpg.InterfaceError,  # "connection is closed": used after the server dropped it
    asyncpg.exceptions.InternalClientError,  # a connection the server dropped between two statements
)


def is_database_fault(exc: BaseException) -> bool:
    """Whether `exc`, or what it was raised from, says the database cannot be reached right now."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DATABASE_FAULTS):
            return True
        seen = seen.__cause__
    return False


class OutageLog:
    """A log line when requests start failing for want of the database, then at most one every
    INTERVAL seconds, counting the 503s answered in between: under load, an outage must not write a
    line per request, let alone a traceback. It names the exception type, never its message."""

    INTERVAL = 10.0  # seconds

    def __init__(self) -> None:
        self._logged_at = -self.INTERVAL
        self._unlogged = 0

    def record(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._logged_at < self.INTERVAL:
            self._unlogged += 1
            return
        unlogged, self._unlogged, self._logged_at = self._unlogged, 0, now
        suffix = f"; {unlogged} more answered so since the previous line" if unlogged else ""
        logger.error("database unreachable (%s): answering 503%s", type(exc).__name__, suffix)


outage_log = OutageLog()


def database_unavailable_response(exc: BaseException) -> Response:
    outage_log.record(exc)
    return problem_from(ServiceUnavailable())


async def handle_database_unavailable(request: Request, exc: Exception) -> Response:
    return database_unavailable_response(exc)


def unexpected_error_response(exc: BaseException) -> Response:
    """Anything no handler claimed; called by the outermost middleware, which sees every layer.

    The log line names the exception and where it was raised, never the traceback or the message
    (either can carry SQL, tokens or personal data); DEBUG adds both, to the log and the response.
    """
    # raised outside the views and outside authentication (which answers its own: middleware.py), or
    # wrapped in another exception
    if is_database_fault(exc):
        return database_unavailable_response(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f"{frame.filename}:{frame.lineno}" if frame else "unknown location"
    if settings.DEBUG:
        logger.error("unhandled %s at %s", type(exc).__name__, where, exc_info=exc)
        extra = {"traceback": traceback.format_exception(exc)}
    else:
        logger.error("unhandled %s at %s", type(exc).__name__, where)
        extra = None
    return problem_response(
        500, "server_error", "Internal server error", "The server failed to handle this request.", extra=extra
    )


EXCEPTION_HANDLERS = {
    Problem: handle_problem,
    HTTPException: handle_http_exception,
    **dict.fromkeys(DATABASE_FAULTS, handle_database_unavailable),
}
