"""Where tokens travel: the bearer transport (the JSON body carries both tokens; curl, mobile apps,
other services) or the cookie transport (browsers: the refresh token only in an HttpOnly cookie no
script can read, the access token in the page's memory). How tokens are made and checked is
sessions.py's and tokens.py's; this module only moves them, on the same routes for both.

A client chooses the cookie transport per request with the header `X-Token-Transport: cookie` on the
routes that answer tokens (register, login and its second step, passwordless login, refresh). Then:
- the answer carries the access token and no refresh token; the refresh token goes into
  `__Secure-refresh_token` (HttpOnly, Secure, SameSite=Strict, Path=/user/refresh-token: sent to
  the refresh route only), for REFRESH_TOKEN_LIFETIME;
- POST /user/refresh-token reads it from the cookie, and a refresh repeated within
  REFRESH_TOKEN_REUSE_GRACE seconds (another tab) gets the same new cookie (sessions.rotate);
- logout clears it.
CSRF: every cookie-transport request must carry that custom header (a cross-site form cannot set
one, and a cross-site script needs a CORS preflight that only CORS_ALLOWED_ORIGINS pass) and an
Origin that is the service's own (as the request reached it: behind a proxy, FORWARDED_ALLOW_IPS must
name the proxy for the scheme to be right) or one of CORS_ALLOWED_ORIGINS; SameSite=Strict keeps the
cookie off cross-site requests besides (so a listed origin must be same-site with the service), and a
refresh cookie sent twice (one planted by a sibling subdomain) is refused. `Secure` (and the
`__Secure-` prefix) is dropped only in DEBUG on
http://localhost, where browsers would not store a Secure cookie.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

import settings
from apps.core.errors import Problem
from apps.core.responses import json_response
from apps.user import sessions
from apps.user.schemas import BrowserTokenOut, TokenPairOut, UserOut

HEADER = "x-token-transport"
COOKIE = "cookie"
COOKIE_PATH = "/user/refresh-token"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class CrossSiteRefused(Problem):
    """A cookie-transport request without the custom header or from an origin not allowed."""

    status, code, title = 403, "csrf_failed", "Cross-site request refused"


def wants_cookie(request: Request) -> bool:
    return request.headers.get(HEADER, "").strip().lower() == COOKIE


def _relaxed(request: Request) -> bool:
    """DEBUG on plain http://localhost: a Secure cookie would not be stored there."""
    return settings.DEBUG and request.url.scheme == "http" and request.url.hostname in LOCAL_HOSTS


def cookie_name(request: Request) -> str:
    return "refresh_token" if _relaxed(request) else "__Secure-refresh_token"


def check_origin(request: Request) -> None:
    """The CSRF check of a cookie-transport request.

    Raises:
        CrossSiteRefused: no Origin, or one that is neither the service's own nor allowed.
    """
    origin = request.headers.get("origin", "").strip().lower()
    own = f"{request.url.scheme}://{request.url.netloc}".lower()
    allowed = {o.rstrip("/").lower() for o in settings.CORS_ALLOWED_ORIGINS}
    if not origin or (origin != own and origin not in allowed):
        raise CrossSiteRefused("Cookie requests must come from the service's own pages or an allowed origin.")


def refuse_cross_site(request: Request) -> None:
    """Before a view that answers tokens does anything: a cookie-transport request must pass the
    CSRF check (a session opened for an answer that is then refused would be left behind).

    Raises:
        CrossSiteRefused: see check_origin.
    """
    if wants_cookie(request):
        check_origin(request)


def browser_refresh_token(request: Request) -> str | None:
    """The refresh token of a cookie-transport refresh (after the CSRF check), None if no cookie.

    Raises:
        CrossSiteRefused: see check_origin; or the cookie twice (a sibling subdomain can plant a
            second one with Domain=, and the parser would keep whichever comes last).
    """
    check_origin(request)
    name = cookie_name(request)
    sent = [part.split("=", 1)[0].strip() for part in request.headers.get("cookie", "").split(";")]
    if sent.count(name) > 1:
        raise CrossSiteRefused("The refresh cookie was sent twice; one of them was not set by this service.")
    return request.cookies.get(name)


def tokens_response(request: Request, issued: sessions.IssuedTokens, status_code: int = 200) -> Response:
    """The answer to a request that opened or refreshed a session, in the transport it asked for.

    Raises:
        CrossSiteRefused: the cookie transport, from an origin not allowed (nothing is set).
    """
    user = UserOut.model_validate(issued.user)
    # Token responses must never be cached (RFC 6749 section 5.1).
    headers = {"Cache-Control": "no-store"}
    if not wants_cookie(request):
        body = TokenPairOut(
            access_token=issued.access_token,
            refresh_token=issued.refresh_token,
            expires_in=issued.expires_in,
            user=user,
        )
        return json_response(body, status_code, headers=headers)
    check_origin(request)
    body = BrowserTokenOut(access_token=issued.access_token, expires_in=issued.expires_in, user=user)
    response = json_response(body, status_code, headers=headers)
    response.set_cookie(
        cookie_name(request),
        issued.refresh_token,
        max_age=settings.REFRESH_TOKEN_LIFETIME,
        path=COOKIE_PATH,
        secure=not _relaxed(request),
        httponly=True,
        samesite="strict",
    )
    return response


def forget_cookie(request: Request, response: Response) -> Response:
    """Clear the refresh cookie of a cookie-transport logout (the cookie itself is never sent here:
    its path is the refresh route's)."""
    name = cookie_name(request)
    if name in request.cookies or wants_cookie(request):
        response.delete_cookie(
            name, path=COOKIE_PATH, secure=not _relaxed(request), httponly=True, samesite="strict"
        )
    return response
