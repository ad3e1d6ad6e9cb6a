"""User endpoints: parse -> accounts / sessions / queries -> response. The rules live in accounts.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

import settings
from apps.core import metrics
from apps.core.errors import NO_STORE, NotFound
from apps.core.openapi import operation
from apps.core.permissions import login_required
from apps.core.requests import read_json, read_query
from apps.core.responses import json_response
from apps.core.throttle import Throttled
from apps.user import (
    accounts,
    events,
    keys,
    mfa,
    password_reset,
    queries,
    sessions,
    throttles,
    transport,
    verification,
)
from apps.user.clients import client_of
from apps.user.exceptions import (
    AccountGone,
    EmailUnverified,
    HashingOverloaded,
    InvalidCredentials,
    InvalidRefreshToken,
    SessionNotFound,
)
from apps.user.models import User
from apps.user.schemas import (
    AcceptedOut,
    AccountDeleteIn,
    BrowserTokenOut,
    Confirmed,
    CookieRefreshIn,
    EmailChangeIn,
    EventOut,
    EventPage,
    EventQuery,
    JWKSetOut,
    LinkTokenIn,
    LoginIn,
    LoginOut,
    PasswordChangeIn,
    PasswordResetConfirmIn,
    PasswordResetIn,
    ProfileUpdateIn,
    RefreshIn,
    RegisteredOut,
    RegisterIn,
    RegistrationOut,
    SecondFactorRequiredOut,
    SessionList,
    SessionOut,
    TokenPairOut,
    UserOut,
)

TAGS = ("user",)


def confirmation(request: Request, data: Confirmed) -> accounts.Confirmation:
    """The owner's confirmation of a sensitive change, as the body gave it, bound to this session."""
    return accounts.Confirmation(
        password=data.password, passkey=data.passkey, session_id=request.user.session_id
    )


async def account_of(request: Request) -> User:
    account = await User.get_or_none(id=request.user.id)
    if account is None:  # deleted since the session was checked
        raise AccountGone()
    return account


@operation(
    "Create an account, mail a verification link, and log it in",
    body=RegisterIn,
    response=(RegistrationOut, BrowserTokenOut),
    status=201,
    errors=(409, 429, 503),
    tags=TAGS,
    token_transport=True,
)
async def register(request: Request) -> Response:
    """With EMAIL_VERIFICATION=mandatory the answer is `{"user": ...}` without tokens: log in once the
    address is verified."""
    transport.refuse_cross_site(request)
    data = await read_json(request, RegisterIn)
    client = client_of(request)
    await throttles.registration(client)
    user, issued = await accounts.register(data.username, data.email, data.password, client)
    if issued is None:
        return json_response(RegisteredOut(user=UserOut.model_validate(user)), 201)
    return transport.tokens_response(request, issued, status_code=201)


@operation(
    "Log in with email or username",
    body=LoginIn,
    response=(LoginOut, BrowserTokenOut),
    errors=(401, 403, 429, 503),
    tags=TAGS,
    token_transport=True,
)
async def login(request: Request) -> Response:
    """Every failure (unknown account, wrong password, inactive account) is the same 401. With
    EMAIL_VERIFICATION=mandatory, the right password to an unverified account is 403
    `email_unverified`, and a new link is mailed. An account with a second factor answers
    `{"mfa_required": true, "mfa_token", "methods"}` and no tokens: POST /user/login/mfa finishes."""
    transport.refuse_cross_site(request)
    data = await read_json(request, LoginIn)
    client = client_of(request)
    try:
        async with throttles.login_attempt(accounts.login_key(data.email, data.username), client):
            issued = await accounts.login(data.password, client, email=data.email, username=data.username)
    except Exception as exc:
        metrics.count_login(_login_outcome(exc))
        raise
    if isinstance(issued, mfa.SecondFactorRequired):
        metrics.count_login("mfa_required")
        body = SecondFactorRequiredOut(mfa_token=issued.mfa_token, methods=issued.methods)
        return json_response(body, headers={"Cache-Control": "no-store"})
    metrics.count_login("success")
    return transport.tokens_response(request, issued)


# What a login that failed counts as (authservice_logins_total{outcome}); anything else is "error".
_LOGIN_OUTCOMES: dict[type[Exception], str] = {
    InvalidCredentials: "invalid_credentials",
    Throttled: "throttled",
    EmailUnverified: "email_unverified",
    HashingOverloaded: "overloaded",
}


def _login_outcome(exc: Exception) -> str:
    return next((_LOGIN_OUTCOMES[cls] for cls in type(exc).__mro__ if cls in _LOGIN_OUTCOMES), "error")


@operation(
    "Exchange a refresh token for a new pair",
    body=(RefreshIn, CookieRefreshIn),
    response=(TokenPairOut, BrowserTokenOut),
    errors=(401, 403),
    tags=TAGS,
    token_transport=True,
)
async def refresh_token(request: Request) -> Response:
    """The refresh token is spent; presenting it again ends the whole session. In the cookie
    transport (`X-Token-Transport: cookie`, body `{}`) the token is the cookie, and a refresh repeated
    within REFRESH_TOKEN_REUSE_GRACE seconds (another tab) gets the same new one."""
    if transport.wants_cookie(request):
        await read_json(request, CookieRefreshIn)
        token = transport.browser_refresh_token(request)
        if token is None:
            raise InvalidRefreshToken()
        issued = await sessions.rotate(token, client_of(request), grace=True)
    else:
        data = await read_json(request, RefreshIn)
        issued = await sessions.rotate(data.refresh_token, client_of(request))
    return transport.tokens_response(request, issued)


@operation("Log out: end this session", status=204, tags=TAGS)
@login_required
async def logout(request: Request) -> Response:
    """The session's refresh token and every access token it issued are refused from now on."""
    await sessions.end(request.user.id, request.user.session_id, client_of(request))
    return transport.forget_cookie(request, Response(status_code=204))


@operation(
    "Check an access token (for nginx auth_request)",
    status=204,
    tags=TAGS,
    headers={"X-User-Id": "the caller's user id", "X-User-Scopes": "space-separated scopes"},
)
@login_required
async def verify(request: Request) -> Response:
    """Answers from request.user alone: 204 with who is calling."""
    user = request.user
    headers = {"X-User-Id": str(user.id), "X-User-Scopes": " ".join(request.auth.scopes)}
    return Response(status_code=204, headers=headers)


@operation("The current user", response=UserOut, tags=TAGS)
@login_required
async def me(request: Request) -> Response:
    """Answered from request.user, which holds the whole user object: no query while this worker has
    the session cached and has heard of no change to the account since (authentication.py)."""
    user = request.user
    if user.profile_stale:  # changed since this worker cached the session: read it once more
        as_of = user.profile_changes
        account = await User.get_or_none(id=user.id)
        if account is None:  # deleted since the session was checked
            raise AccountGone()
        user.read_profile(account, as_of)
    if user.profile_json is None:
        user.profile_json = UserOut.model_validate(user).model_dump_json().encode()
    return Response(user.profile_json, headers=NO_STORE, media_type="application/json")


@operation("Change the username", body=ProfileUpdateIn, response=UserOut, errors=(409,), tags=TAGS)
@login_required
async def update_me(request: Request) -> Response:
    """`email` is refused (422): the email changes through POST /user/me/email."""
    data = await read_json(request, ProfileUpdateIn)
    account = await accounts.update_profile(
        await account_of(request), client_of(request), username=data.username
    )
    return json_response(UserOut.model_validate(account))


@operation("Delete the account", body=AccountDeleteIn, status=204, errors=(409, 503), tags=TAGS)
@login_required
async def delete_me(request: Request) -> Response:
    """Needs the password; every session ends at once."""
    data = await read_json(request, AccountDeleteIn)
    await accounts.delete_account(await account_of(request), confirmation(request, data), client_of(request))
    return Response(status_code=204)


@operation("Change the password", body=PasswordChangeIn, status=204, errors=(503,), tags=TAGS)
@login_required
async def change_password(request: Request) -> Response:
    """Needs the current password; every other session of the user ends at once."""
    data = await read_json(request, PasswordChangeIn)
    await accounts.change_password(
        await account_of(request),
        data.current_password,
        data.new_password,
        client_of(request),
        keep_session_id=request.user.session_id,
    )
    return Response(status_code=204)


# --- email verification, email change, password reset ----------------------------------------------


def _accepted(detail: str) -> Response:
    return json_response(AcceptedOut(detail=detail), 202)


@operation(
    "Change the email: a link goes to the new address",
    body=EmailChangeIn,
    response=AcceptedOut,
    status=202,
    errors=(409, 429, 503),
    tags=TAGS,
)
@login_required
async def change_email(request: Request) -> Response:
    """Needs the password (an account without one: `passkey`, an answer to POST
    /user/passkeys/reauth/options). The link goes to the new address and a notice to the current one; the
    email changes only when the link is used (POST /user/email/verify)."""
    data = await read_json(request, EmailChangeIn)
    await throttles.mail_for_account(request.user.id)  # before the password check too: no oracle
    await verification.request_email_change(
        await account_of(request), data.email, confirmation(request, data), client_of(request)
    )
    return _accepted("A link to confirm the change is on its way to the new address.")


@operation("Mail a new verification link", response=AcceptedOut, status=202, errors=(409, 429), tags=TAGS)
@login_required
async def send_verification(request: Request) -> Response:
    """To the pending new address if a change is pending, else to the account's unverified address
    (409 `already_verified` when there is neither)."""
    await throttles.mail_for_account(request.user.id)
    await verification.send_link(await account_of(request))
    return _accepted("A verification link is on its way.")


@operation("Use a verification link", body=LinkTokenIn, response=UserOut, errors=(409,), tags=TAGS)
async def verify_email(request: Request) -> Response:
    """The token from `{FRONTEND_URL}/verify-email?token=...`. A bad, spent or expired one is 400
    `invalid_link`; 409 if the new address became another account's meanwhile."""
    data = await read_json(request, LinkTokenIn)
    user = await verification.verify(data.token, client_of(request))
    return json_response(UserOut.model_validate(user))


@operation(
    "Ask for a password reset link",
    body=PasswordResetIn,
    response=AcceptedOut,
    status=202,
    errors=(429,),
    tags=TAGS,
)
async def request_password_reset(request: Request) -> Response:
    """The same answer, in the same time, whether or not an account has the address; the link is
    mailed only to an account's stored address."""
    data = await read_json(request, PasswordResetIn)
    client = client_of(request)
    await throttles.password_reset_request(data.email, client)
    await password_reset.request_reset(data.email, client)
    return _accepted("If an account has this address, a link to reset its password is on its way.")


@operation(
    "Set a new password with a reset link", body=PasswordResetConfirmIn, status=204, errors=(503,), tags=TAGS
)
async def confirm_password_reset(request: Request) -> Response:
    """The token from `{FRONTEND_URL}/reset-password?token=...`. Every session of the account ends;
    nobody is logged in. A bad, spent or expired link is 400 `invalid_link`."""
    data = await read_json(request, PasswordResetConfirmIn)
    await password_reset.reset_password(data.token, data.new_password, client_of(request))
    return Response(status_code=204)


# --- sessions and history ---------------------------------------------------------------------------


@operation("The live sessions of this account, newest first", response=SessionList, tags=TAGS)
@login_required
async def session_list(request: Request) -> Response:
    """Each login that is still live, with the device and address it came from; `current` marks
    the one this access token belongs to."""
    rows = await queries.live_sessions(request.user.id)
    return json_response(SessionList([SessionOut.of(row, current=request.user.session_id) for row in rows]))


@operation("End one session of this account", status=204, errors=(404,), tags=TAGS)
@login_required
async def session_delete(request: Request) -> Response:
    """Its tokens are refused at once, by every worker. Another user's session (or an unknown or
    ended one) answers 404."""
    session_id = request.path_params["session_id"]
    ended = await sessions.end(
        request.user.id, str(session_id), client_of(request), event=events.SESSION_REVOKED
    )
    if not ended:
        raise SessionNotFound()
    return Response(status_code=204)


@operation("Log out everywhere: end every session of this account, this one included", status=204, tags=TAGS)
@login_required
async def logout_all(request: Request) -> Response:
    await sessions.end_all(request.user.id, client_of(request))
    return transport.forget_cookie(request, Response(status_code=204))


@operation(
    "This account's history, newest first", query=EventQuery, response=EventPage, errors=(422,), tags=TAGS
)
@login_required
async def event_list(request: Request) -> Response:
    query = read_query(request, EventQuery)
    count, rows = await queries.events(user_id=request.user.id, page=query.page, page_size=query.page_size)
    return json_response(
        EventPage(
            count=count,
            page=query.page,
            page_size=query.page_size,
            results=[EventOut.model_validate(r) for r in rows],
        )
    )


@operation(
    "Where to change a password (W3C change-password URL): the SPA's page",
    status=302,
    tags=TAGS,
    headers={"Location": "{FRONTEND_URL}/settings/password"},
)
async def change_password_page(request: Request) -> Response:
    """Password managers send users here to change a password (W3C "A Well-Known URL for Changing
    Passwords"); the SPA at FRONTEND_URL has the form."""
    return RedirectResponse(f"{settings.FRONTEND_URL}/settings/password", status_code=302)


# Public keys are not account data: shared caches may keep them, for minutes rather than for ever, so
# that verifiers see a rotation's new key soon. A verifier fetches again on a kid it does not know, but
# a shared cache may still answer the old set for 5 minutes: README's rotation publishes a new key as a
# fallback before it signs anything.
JWKS_CACHE_CONTROL = "public, max-age=300"


@operation(
    "The public keys that verify access tokens (JWK Set)",
    response=JWKSetOut,
    errors=(404,),
    tags=TAGS,
    headers={"Cache-Control": JWKS_CACHE_CONTROL},
)
async def jwks(request: Request) -> Response:
    """With JWT_ALGORITHM EdDSA, ES256 or RS256: JWT_PRIVATE_KEY's public key, then those of
    JWT_PRIVATE_KEY_FALLBACKS, each under the `kid` that access tokens carry, so another service
    verifies them offline. With HS256, HS384 or HS512 (an HMAC secret, nothing public): 404."""
    published = keys.key_ring().jwks
    if published is None:
        raise NotFound(
            "Access tokens are signed with a shared secret (JWT_ALGORITHM is HMAC): there is no public "
            "key; check tokens with GET /user/verify."
        )
    return json_response(JWKSetOut.model_validate(published), headers={"Cache-Control": JWKS_CACHE_CONTROL})
