"""Passkey endpoints: adding, listing, renaming and removing an account's passkeys, and the passkey
logins (passwordless, and as the second factor of POST /user/login/mfa). The rules live in
passkeys.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from apps.core.lazy import lazy_import
from apps.core.openapi import operation
from apps.core.permissions import login_required
from apps.core.requests import read_json
from apps.core.responses import json_response
from apps.user import transport
from apps.user.clients import client_of
from apps.user.schemas import (
    BrowserTokenOut,
    CreationOptionsOut,
    PasskeyCreateIn,
    PasskeyDeleteIn,
    PasskeyList,
    PasskeyLoginIn,
    PasskeyLoginOptionsIn,
    PasskeyOut,
    PasskeyRenameIn,
    RequestOptionsOut,
    TokenPairOut,
)
from apps.user.views import account_of, confirmation

# py_webauthn is loaded with the first passkey request
passkeys = lazy_import("apps.user.passkeys", requires=("webauthn", "cbor2"))

TAGS = ("passkeys",)


@operation(
    "Options to create a passkey (navigator.credentials.create)",
    response=CreationOptionsOut,
    tags=TAGS,
)
@login_required
async def passkey_register_options(request: Request) -> Response:
    """A discoverable credential, for this account and this session, within 5 minutes: POST the
    browser's answer to /user/passkeys. The account's passkeys are excluded (an authenticator holds
    one per account)."""
    options = await passkeys.registration_options(await account_of(request), request.user.session_id)
    return json_response(CreationOptionsOut(options))


@operation(
    "Add a passkey: the answer of navigator.credentials.create()",
    body=PasskeyCreateIn,
    response=PasskeyOut,
    status=201,
    errors=(409,),
    tags=TAGS,
)
@login_required
async def passkey_create(request: Request) -> Response:
    """`credential` answers the options of this session's latest POST /user/passkeys/register/options
    (its challenge is used once). 400 `invalid_passkey`: it does not verify (origin, RP id, challenge
    expired or used); 409 `passkey_exists`: it is registered already. From now on a password login
    to the account asks for a second factor."""
    data = await read_json(request, PasskeyCreateIn)
    account = await account_of(request)
    passkey = await passkeys.add(
        account, request.user.session_id, data.credential, data.name, client_of(request)
    )
    return json_response(PasskeyOut.model_validate(passkey), 201)


@operation("The account's passkeys", response=PasskeyList, tags=TAGS)
@login_required
async def passkey_list(request: Request) -> Response:
    """Newest first."""
    rows = await passkeys.list_of(request.user.id)
    return json_response(PasskeyList([PasskeyOut.model_validate(row) for row in rows]))


@operation(
    "Rename a passkey",
    body=PasskeyRenameIn,
    response=PasskeyOut,
    errors=(404,),
    tags=TAGS,
)
@login_required
async def passkey_rename(request: Request) -> Response:
    data = await read_json(request, PasskeyRenameIn)
    passkey = await passkeys.rename(
        await account_of(request), request.path_params["passkey_id"], data.name, client_of(request)
    )
    return json_response(PasskeyOut.model_validate(passkey))


@operation(
    "Remove a passkey",
    body=PasskeyDeleteIn,
    status=204,
    errors=(404,),
    tags=TAGS,
)
@login_required
async def passkey_delete(request: Request) -> Response:
    """Confirmed with `password`; an account without a usable password confirms with `passkey`, an
    answer to POST /user/passkeys/reauth/options (400 `invalid_passkey` if it does not verify).
    Another account's passkey is 404."""
    data = await read_json(request, PasskeyDeleteIn)
    await passkeys.remove(
        await account_of(request),
        request.path_params["passkey_id"],
        client_of(request),
        confirmation(request, data),
    )
    return Response(status_code=204)


@operation(
    "Options to confirm a change with a passkey (navigator.credentials.get)",
    response=RequestOptionsOut,
    errors=(409,),
    tags=TAGS,
)
@login_required
async def passkey_reauth_options(request: Request) -> Response:
    """For an account without a usable password: its passkeys, user verification required, for this
    session, within 5 minutes. The answer goes in `passkey` where a change asks for `password`
    (DELETE /user/passkeys/{id}). 409 `no_passkey`: the account has none."""
    options = await passkeys.reauthentication_options(await account_of(request), request.user.session_id)
    return json_response(RequestOptionsOut(options))


@operation(
    "Options to log in with a passkey (navigator.credentials.get)",
    body=PasskeyLoginOptionsIn,
    body_required=False,
    response=RequestOptionsOut,
    errors=(409, 429),
    tags=TAGS,
)
async def passkey_login_options(request: Request) -> Response:
    """No body (or `{}`): a passwordless login with a discoverable passkey, user verification
    required; POST the answer to /user/login/passkey. With the `mfa_token` of POST /user/login: the
    account's passkeys, for that login attempt only; POST the answer as `passkey` to /user/login/mfa
    (409 `no_passkey`: the account has none; 401 `invalid_mfa_token`). Within 5 minutes."""
    data = PasskeyLoginOptionsIn()
    if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
        data = await read_json(request, PasskeyLoginOptionsIn)
    if data.mfa_token is not None:
        options = await passkeys.second_factor_options(data.mfa_token)
    else:
        options = await passkeys.login_options(client_of(request))
    return json_response(RequestOptionsOut(options))


@operation(
    "Log in with a passkey alone",
    body=PasskeyLoginIn,
    response=(TokenPairOut, BrowserTokenOut),
    errors=(403, 429, 503),
    tags=TAGS,
    token_transport=True,
)
async def passkey_login(request: Request) -> Response:
    """`credential` answers the options of POST /user/login/passkey/options (no body), user-verified.
    401 `invalid_passkey` for any failure (ask for new options: a challenge is used once)."""
    transport.refuse_cross_site(request)
    data = await read_json(request, PasskeyLoginIn)
    issued = await passkeys.login(data.credential, client_of(request))
    return transport.tokens_response(request, issued)
