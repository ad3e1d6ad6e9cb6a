"""HTTP middleware: request context (request id, access log, last-resort errors), metrics, host check,
JWT auth.

`JWTAuthenticationBackend` is the only reader of the Authorization header.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import re
import secrets
import time

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import settings
from apps.core import metrics
from apps.core.errors import (
    InvalidToken,
    database_unavailable_response,
    is_database_fault,
    problem_from,
    problem_response,
    unexpected_error_response,
)
from apps.core.logs import client_ip_var, escape_field, request_id_var, user_id_var
from apps.user import authentication

access_log = logging.getLogger("authservice.access")

HOST_PATTERN = re.compile(r"([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(:[0-9]+)?")

# A client's id is echoed into headers and logs: accept only a short, plain token (no log injection).
# bytes.translate deletes the allowed bytes in C; anything left over means the id is refused.
REQUEST_ID_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
REQUEST_ID_MAX_LENGTH = 128
# Every response: browsers must not guess a JSON or problem body to be HTML or script.
NOSNIFF_HEADER = (b"x-content-type-options", b"nosniff")


class RequestContextMiddleware:
    """Outermost layer of the app's own: request id, one access-log line, 500s as problem+json.

    `X-Request-ID` is taken from the client (nginx sets it with `$request_id`) when it is well formed,
    generated otherwise, echoed on the response and attached to every log line of the request.
    Every response, errors and CORS preflights included, carries `X-Content-Type-Options: nosniff`.
    The access line is `client "METHOD path" status time`, client-sent fields escaped (logs.py), so
    a request cannot forge or split a line. This runs on every request, so it works on raw ASGI
    headers and allocates little.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Generated ids: a random per-process prefix and a counter; unique across workers and restarts
        # without a urandom call per request.
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count(1)

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if 0 < len(value) <= REQUEST_ID_MAX_LENGTH and not value.translate(None, REQUEST_ID_BYTES):
                    return value.decode("ascii")
                break
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        request_id_header = (b"x-request-id", request_id.encode())
        # behind nginx, uvicorn's --proxy-headers has put the real client in scope["client"]
        client = scope.get("client")
        client_ip = client[0] if client else None
        token = request_id_var.set(request_id)
        client_token = client_ip_var.set(client_ip)
        user_token = user_id_var.set(None)  # JWTAuthenticationBackend sets it once the token is verified
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), request_id_header, NOSNIFF_HEADER]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:  # the last resort: nothing below handled it
            if response_started:
                raise
            response = unexpected_error_response(exc)
            await response(scope, receive, send_with_request_id)
        finally:
            if settings.ACCESS_LOG:
                elapsed_ms = (time.perf_counter() - started) * 1000
                access_log.info(
                    '%s "%s %s" %s %.1fms',
                    escape_field(client_ip) if client_ip else "-",
                    escape_field(scope["method"]),
                    escape_field(scope["path"]),
                    status,
                    elapsed_ms,
                    # the same, as fields of a JSON line (LOG_FORMAT=json); the text format ignores them
                    extra={
                        "access": {
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "duration_ms": round(elapsed_ms, 1),
                        }
                    },
                )
            user_id_var.reset(user_token)
            client_ip_var.reset(client_token)
            request_id_var.reset(token)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class MetricsMiddleware:
    """Installed only with METRICS_ENABLED, just inside RequestContextMiddleware: times every request
    (apps/core/metrics.py) and answers `GET /metrics` to the `allowed` networks.

    The label is the template of the route the router matched (it leaves it in scope["route"]; the
    scope is one dict all the way down), read after the request, so it costs no second routing.

    `/metrics` is answered here, before the host check: Prometheus scrapes by IP, with whatever Host
    that makes, and the allow-list on the client's address (uvicorn's, after FORWARDED_ALLOW_IPS) is
    what protects it. To any other address the path does not exist: the request goes on down like
    any other, through the host check to the router's 404, so its answer is an unknown path's.
    """

    def __init__(self, app: ASGIApp, allowed: tuple[IPNetwork, ...]) -> None:
        self.app = app
        self.allowed = allowed

    def _may_scrape(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:  # a unix socket's peer, or a name: not an address on the list
            return False
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
        return any(address in net or (mapped is not None and mapped in net) for net in self.allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what an exception that escapes becomes (RequestContextMiddleware's last resort)

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path, method = scope["path"], scope["method"]
        scrape = path == metrics.METRICS_PATH and method == "GET" and self._may_scrape(scope)
        try:
            if scrape:
                await self._scrape(scope, receive, send_with_status)
            else:
                await self.app(scope, receive, send_with_status)
        finally:
            if scrape:
                route = metrics.METRICS_PATH
            else:
                matched = scope.get("route")  # set by the router, there even when the view raised
                route = matched.path if matched is not None else metrics.UNMATCHED_ROUTE
            metrics.observe_request(method, route, status, time.perf_counter() - started)

    @staticmethod
    async def _scrape(scope: Scope, receive: Receive, send: Send) -> None:
        accept = next((value for name, value in scope["headers"] if name == b"accept"), b"")
        body, content_type = await metrics.exposition(accept.decode("latin-1"))
        response = Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
        await response(scope, receive, send)


class AllowedHostsMiddleware:
    """ALLOWED_HOSTS, as Django checks it: a Host header not listed is refused with 400 problem+json.

    Entries are exact names or `*.example.com` (any subdomain); `*` alone allows any host, as in
    Django (check --deploy flags it). Verdicts are remembered per raw header value, so the check costs
    a dict look-up per request. Two Host headers are refused too (RFC 9112 section 3.2): which one
    counts would be a guess, and a proxy may have guessed the other way.
    """

    def __init__(
        self, app: ASGIApp, allowed_hosts: list[str], any_host_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        # probes (/health, /ready) come by IP, with whatever Host the orchestrator puts there
        self.any_host_paths = any_host_paths
        self.any_host = "*" in allowed_hosts
        self.exact = {h.lower() for h in allowed_hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))
        self._verdicts: dict[bytes, bool] = {}

    def _allowed(self, raw: bytes) -> bool:
        verdict = self._verdicts.get(raw)
        if verdict is None:
            verdict = self._judge(raw.decode("latin-1").lower())
            if len(self._verdicts) < 1024:  # bounded: Host is client-controlled
                self._verdicts[raw] = verdict
        return verdict

    def _judge(self, host: str) -> bool:
        if not host:
            return self.any_host
        # Django's host_validation_re: a name or a bracketed IPv6 address, and an optional port.
        # Looser parsers (urlsplit) take "evil.com\\@localhost" or "x@localhost" for localhost, and
        # a URL built from such a header points elsewhere.
        match = HOST_PATTERN.fullmatch(host)
        if match is None:
            return False
        name = match.group(1).removesuffix(".")
        return self.any_host or any(
            candidate in self.exact or candidate.endswith(self.suffixes)
            for candidate in {name, name.strip("[]")}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.any_host_paths:
            raw = None
            for name, value in scope["headers"]:
                if name == b"host":
                    if raw is not None:
                        await self._refuse(scope, receive, send, "The request has more than one Host header.")
                        return
                    raw = value
            if not self._allowed(raw or b""):
                await self._refuse(scope, receive, send, "This host name is not served here (ALLOWED_HOSTS).")
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
        response = problem_response(400, "invalid_host", "Invalid host header", detail)
        await response(scope, receive, send)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling, with two changes: a disallowed preflight is refused with problem+json,
    and a request without an Origin header (curl, httpie, server-to-server) passes straight through.
    Such responses lack `Vary: Origin`; what a shared cache could keep of them is at most /health, since
    responses to Authorization requests are not stored by shared caches and token responses are no-store.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(name == b"origin" for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in {"content-length", "content-type"}
        }
        detail = bytes(response.body).decode() + " (CORS_ALLOWED_ORIGINS)."
        return problem_response(400, "cors_rejected", "Cross-origin request refused", detail, headers=headers)


class JWTAuthenticationBackend(AuthenticationBackend):
    """`Authorization: Bearer <access token>` -> request.user and request.auth.

    No header or another scheme: not ours, anonymous (None). A Bearer token that is malformed,
    expired, of the wrong type, or whose session has ended: ours but broken, 401. Verified tokens
    and live sessions are cached per worker; apps/user/authentication.py explains why that stays correct.
    """

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = next((value for name, value in conn.scope["headers"] if name == b"authorization"), None)
        if not header:
            return None
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        if not token:
            raise AuthenticationError("The Bearer token is empty.")
        try:
            user = await authentication.authenticator().user_for_token(token)
        except authentication.TokenRefused as exc:
            raise AuthenticationError(str(exc)) from None
        except Exception as exc:
            if is_database_fault(exc):
                raise _DatabaseAway(exc) from exc
            raise
        user_id_var.set(user.id)  # for the request's log lines; RequestContextMiddleware resets it
        return AuthCredentials(user.scopes), user


class _DatabaseAway(AuthenticationError):
    """The session lookup could not reach the database. Answered here, by the authentication layer's
    error handler, with the 503 any request that needs the database gets: from inside the CORS layer,
    so that a browser app reads a 503 with Retry-After rather than a CORS failure."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("database unavailable")
        self.cause = cause


def authentication_failed(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    if isinstance(exc, _DatabaseAway):
        return database_unavailable_response(exc.cause)
    return problem_from(InvalidToken(str(exc)))
