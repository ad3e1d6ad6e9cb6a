"""The one table from account errors (exceptions.py) to problem+json: the HTTP edge of the app."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from apps.core.errors import BEARER_CHALLENGE, InvalidToken, problem_from, problem_response
from apps.user import exceptions

_CHALLENGE = {"WWW-Authenticate": BEARER_CHALLENGE}

# exception class: (status, code, title, headers); the most specific class is looked up first (MRO).
PROBLEMS: dict[type[exceptions.AccountError], tuple[int, str, str, dict[str, str] | None]] = {
    exceptions.InvalidCredentials: (401, "invalid_credentials", "Invalid credentials", _CHALLENGE),
    exceptions.InvalidRefreshToken: (401, "invalid_refresh_token", "Invalid refresh token", _CHALLENGE),
    exceptions.WrongPassword: (422, "validation_error", "Invalid input", None),
    exceptions.WeakPassword: (422, "validation_error", "Invalid input", None),
    exceptions.Taken: (409, "conflict", "Conflict", None),
    exceptions.UserNotFound: (404, "not_found", "Not found", None),
    exceptions.SessionNotFound: (404, "not_found", "Not found", None),
    exceptions.NotAllowed: (403, "permission_denied", "Permission denied", None),
    exceptions.LastSuperuser: (409, "last_superuser", "Last superuser", None),
    exceptions.InvalidLink: (400, "invalid_link", "Invalid link", None),
    exceptions.EmailUnverified: (403, "email_unverified", "Email not verified", None),
    exceptions.NothingToVerify: (409, "already_verified", "Already verified", None),
    exceptions.InvalidInput: (422, "validation_error", "Invalid input", None),
    exceptions.InvalidCode: (401, "invalid_code", "Invalid code", _CHALLENGE),
    exceptions.InvalidMfaToken: (401, "invalid_mfa_token", "Invalid login attempt", _CHALLENGE),
    exceptions.MfaAlreadyEnabled: (409, "mfa_already_enabled", "Already enabled", None),
    exceptions.MfaNotEnabled: (409, "mfa_not_enabled", "Not enabled", None),
    exceptions.MfaNotSetUp: (409, "mfa_not_set_up", "Not set up", None),
    exceptions.PasskeyRejected: (400, "invalid_passkey", "Invalid passkey", None),
    exceptions.InvalidPasskey: (401, "invalid_passkey", "Invalid passkey", _CHALLENGE),
    exceptions.PasskeyNotFound: (404, "not_found", "Not found", None),
    exceptions.PasskeyExists: (409, "passkey_exists", "Already registered", None),
    exceptions.NoPasskey: (409, "no_passkey", "No passkey", None),
    exceptions.HashingOverloaded: (503, "overloaded", "Too busy", {"Retry-After": "1"}),
    exceptions.AccountError: (400, "bad_request", "Bad request", None),
}


async def handle_account_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, exceptions.AccountError)
    if isinstance(exc, exceptions.AccountGone):
        return problem_from(InvalidToken(exc.message))
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            status, code, title, headers = PROBLEMS[cls]
            break
    field_error = isinstance(
        exc, exceptions.WrongPassword | exceptions.WeakPassword | exceptions.InvalidInput
    )
    detail = "One or more fields are invalid." if field_error else exc.message
    return problem_response(status, code, title, detail, errors=exc.errors, headers=headers)


EXCEPTION_HANDLERS = {exceptions.AccountError: handle_account_error}
