"""HTTP middleware: request context (request id, access log, last-resort errors), host check, JWT auth.

`JWTAuthenticationBackend` is the only reader of the Authorization header.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apps.core.errors import InvalidToken, problem_from, problem_response, unexpected_error_response
from apps.core.logs import request_id_var
from apps.user import services, tokens
from apps.user.models import User

access_log = logging.getLogger("authservice.access")

# A client's id is echoed into headers and logs: accept only a short, plain token (no log injection).
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Outermost layer of the app's own: request id, one access-log line, 500s as problem+json.

    `X-Request-ID` is taken from the client (nginx sets it with `$request_id`) when it is well formed,
    generated otherwise, echoed on the response and attached to every log line of the request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:  # the last resort: nothing below handled it
            if response_started:
                raise
            response = unexpected_error_response(exc)
            await response(scope, receive, send_with_request_id)
        finally:
            access_log.info(
                '"%s %s" %s %.1fms',
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )
            request_id_var.reset(token)


class ProblemTrustedHostMiddleware(TrustedHostMiddleware):
    """Starlette's Host header check (ALLOWED_HOSTS), refusing with problem+json instead of plain text."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        async def passed(scope: Scope, receive: Receive, send: Send) -> None:
            scope["host_checked"] = True
            await app(scope, receive, send)

        super().__init__(passed, allowed_hosts=allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def refuse_as_problem(message: Message) -> None:
            if scope.get("host_checked"):
                await send(message)
            elif message["type"] == "http.response.start":
                response = problem_response(
                    400,
                    "invalid_host",
                    "Invalid host header",
                    "This host name is not served here (ALLOWED_HOSTS).",
                )
                await response(scope, receive, send)

        await super().__call__(scope, receive, refuse_as_problem)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling, refusing a disallowed preflight with problem+json instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in {"content-length", "content-type"}
        }
        detail = bytes(response.body).decode() + " (CORS_ALLOWED_ORIGINS)."
        return problem_response(400, "cors_rejected", "Cross-origin request refused", detail, headers=headers)


class AuthenticatedUser(BaseUser):
    """`request.user` for a valid access token: the fresh account row plus the session it came from."""

    def __init__(self, account: User, session_id: str) -> None:
        self.account = account
        self.id = account.id
        self.username = account.username
        self.email = account.email
        self.is_staff = account.is_staff
        self.is_superuser = account.is_superuser
        self.session_id = session_id

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.username

    @property
    def identity(self) -> str:
        return str(self.id)


def scopes_for(account: User) -> list[str]:
    scopes = ["authenticated"]
    if account.is_staff:
        scopes.append("staff")
    if account.is_superuser:
        scopes.append("superuser")
    return scopes


class JWTAuthenticationBackend(AuthenticationBackend):
    """`Authorization: Bearer <access token>` -> request.user and request.auth.

    No header or another scheme: not ours, anonymous (None). A Bearer token that is malformed,
    expired, of the wrong type, or whose session has ended: ours but broken, 401.
    """

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        if not token:
            raise AuthenticationError("The Bearer token is empty.")
        try:
            claims = tokens.decode_access_token(token)
        except tokens.TokenError as exc:
            raise AuthenticationError(str(exc)) from None
        account = await services.authenticated_user(claims.user_id, claims.session_id)
        if account is None:
            raise AuthenticationError("The session of this access token has ended.")
        return AuthCredentials(scopes_for(account)), AuthenticatedUser(account, claims.session_id)


def authentication_failed(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    return problem_from(InvalidToken(str(exc)))
