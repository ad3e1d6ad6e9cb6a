"""User endpoints: parse -> service -> response. The rules live in services.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apps.core.errors import InvalidToken
from apps.core.permissions import login_required
from apps.core.requests import read_json
from apps.user import services
from apps.user.models import User
from apps.user.schemas import (
    AccountDeleteIn,
    LoginIn,
    PasswordChangeIn,
    ProfileUpdateIn,
    RefreshIn,
    RegisterIn,
    TokenPairOut,
    UserOut,
)


def _client(request: Request) -> services.Client:
    # Behind nginx, uvicorn's --proxy-headers puts the real client address in request.client.
    return services.Client(
        user_agent=request.headers.get("user-agent", ""),
        ip_address=request.client.host if request.client else None,
    )


def _user_response(user: User | dict) -> Response:
    # pydantic serialises straight to JSON bytes (no dict, no json.dumps): this is every /user/me.
    return Response(UserOut.model_validate(user).model_dump_json(), media_type="application/json")


def _tokens_response(issued: services.IssuedTokens, status_code: int = 200) -> JSONResponse:
    body = TokenPairOut(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
        user=UserOut.model_validate(issued.user),
    ).model_dump(mode="json")
    # Token responses must never be cached (RFC 6749 section 5.1).
    return JSONResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


async def register(request: Request) -> Response:
    data = await read_json(request, RegisterIn)
    issued = await services.register(data.username, data.email, data.password, _client(request))
    return _tokens_response(issued, status_code=201)


async def login(request: Request) -> Response:
    data = await read_json(request, LoginIn)
    issued = await services.login(data.password, _client(request), email=data.email, username=data.username)
    return _tokens_response(issued)


async def refresh_token(request: Request) -> Response:
    data = await read_json(request, RefreshIn)
    issued = await services.rotate_refresh_token(data.refresh_token, _client(request))
    return _tokens_response(issued)


@login_required
async def logout(request: Request) -> Response:
    await services.logout(request.user.session_id)
    return Response(status_code=204)


async def _account(request: Request) -> User:
    account = await User.get_or_none(id=request.user.id)
    if account is None:  # deleted since the session was checked
        raise InvalidToken("The account of this access token no longer exists.")
    return account


@login_required
async def verify(request: Request) -> Response:
    """For nginx `auth_request` and other services: 204 with who is calling, from request.user alone."""
    user = request.user
    headers = {"X-User-Id": str(user.id), "X-User-Scopes": " ".join(request.auth.scopes)}
    return Response(status_code=204, headers=headers)


@login_required
async def me(request: Request) -> Response:
    if request.method == "GET":
        profile = await services.user_profile(request.user.id)
        if profile is None:
            raise InvalidToken("The account of this access token no longer exists.")
        return _user_response(profile)
    account = await _account(request)
    if request.method == "PATCH":
        data = await read_json(request, ProfileUpdateIn)
        account = await services.update_profile(account, username=data.username, email=data.email)
        return _user_response(account)
    data = await read_json(request, AccountDeleteIn)
    await services.delete_account(account, data.password)
    return Response(status_code=204)


@login_required
async def change_password(request: Request) -> Response:
    data = await read_json(request, PasswordChangeIn)
    await services.change_password(
        await _account(request),
        data.current_password,
        data.new_password,
        keep_session_id=request.user.session_id,
    )
    return Response(status_code=204)
