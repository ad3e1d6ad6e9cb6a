"""Second-factor endpoints: TOTP setup, confirm, disable, new recovery codes, and the login's second
step. The rules live in mfa.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from apps.core.lazy import lazy_import
from apps.core.openapi import operation
from apps.core.permissions import login_required
from apps.core.requests import read_json
from apps.core.responses import json_response
from apps.user import mfa, transport
from apps.user.clients import client_of
from apps.user.schemas import (
    BrowserTokenOut,
    CodeIn,
    PasswordAndCodeIn,
    PasswordIn,
    RecoveryCodesOut,
    SecondFactorIn,
    TokenPairOut,
    TOTPSetupOut,
)
from apps.user.views import account_of, confirmation

# py_webauthn is loaded with the first passkey request
passkeys = lazy_import("apps.user.passkeys", requires=("webauthn", "cbor2"))

TAGS = ("second factors",)
NO_STORE = {"Cache-Control": "no-store"}  # secrets and codes: never kept by a cache


@operation(
    "Start setting up an authenticator app (TOTP)",
    body=PasswordIn,
    response=TOTPSetupOut,
    errors=(401, 409, 422),
    tags=TAGS,
)
@login_required
async def totp_setup(request: Request) -> Response:
    """The secret, as text, as an otpauth:// URI and as a QR code (SVG). Not active until confirmed
    with a code; a new setup replaces one that was not confirmed."""
    data = await read_json(request, PasswordIn)
    setup = await mfa.setup_totp(await account_of(request), confirmation(request, data))
    body = TOTPSetupOut(secret=setup.secret, otpauth_uri=setup.otpauth_uri, qr_svg=setup.qr_svg)
    return json_response(body, headers=NO_STORE)


@operation(
    "Activate the authenticator app with a code; returns the recovery codes",
    body=CodeIn,
    response=RecoveryCodesOut,
    errors=(401, 409, 422, 429),
    tags=TAGS,
)
@login_required
async def totp_confirm(request: Request) -> Response:
    """From now on a login to this account needs a code. The ten recovery codes are shown once."""
    data = await read_json(request, CodeIn)
    codes = await mfa.confirm_totp(await account_of(request), data.code, client_of(request))
    return json_response(RecoveryCodesOut(recovery_codes=codes), headers=NO_STORE)


@operation(
    "Turn the authenticator app off",
    body=PasswordAndCodeIn,
    status=204,
    errors=(401, 409, 422, 429),
    tags=TAGS,
)
@login_required
async def totp_disable(request: Request) -> Response:
    """Needs the password and a current code (or, the app being lost, a recovery code). The recovery
    codes go too."""
    data = await read_json(request, PasswordAndCodeIn)
    await mfa.disable_totp(
        await account_of(request), confirmation(request, data), data.code, client_of(request)
    )
    return Response(status_code=204)


@operation(
    "Replace the recovery codes",
    body=PasswordAndCodeIn,
    response=RecoveryCodesOut,
    errors=(401, 409, 422, 429),
    tags=TAGS,
)
@login_required
async def recovery_codes(request: Request) -> Response:
    """A new set of ten, shown once; the old set stops working."""
    data = await read_json(request, PasswordAndCodeIn)
    account = await account_of(request)
    codes = await mfa.regenerate_recovery_codes(
        account, confirmation(request, data), data.code, client_of(request)
    )
    return json_response(RecoveryCodesOut(recovery_codes=codes), headers=NO_STORE)


@operation(
    "Finish a login with a second factor",
    body=SecondFactorIn,
    response=(TokenPairOut, BrowserTokenOut),
    errors=(401, 422, 429),
    tags=TAGS,
    token_transport=True,
)
async def login_mfa(request: Request) -> Response:
    """`mfa_token` from POST /user/login, and a TOTP `code`, a `recovery_code`, or a `passkey`: the
    answer to POST /user/login/passkey/options with this `mfa_token`. Wrong codes are 401
    `invalid_code`, a passkey that does not verify 401 `invalid_passkey`; both count against
    THROTTLE_MFA. An expired or used `mfa_token` is 401 `invalid_mfa_token` (log in again)."""
    transport.refuse_cross_site(request)
    data = await read_json(request, SecondFactorIn)
    client = client_of(request)
    if data.passkey is not None:
        issued = await passkeys.finish_second_factor(data.mfa_token, data.passkey, client)
    else:
        issued = await mfa.finish_login(
            data.mfa_token, client, code=data.code, recovery_code=data.recovery_code
        )
    return transport.tokens_response(request, issued)
