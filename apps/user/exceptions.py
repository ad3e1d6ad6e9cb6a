"""What can go wrong with accounts and sessions, in the domain's terms: no HTTP status here.

accounts.py, sessions.py and the manage.py commands raise these; `problems.py` is the one table that
turns them into problem+json at the HTTP edge, and the commands print their message.
"""

from __future__ import annotations


class AccountError(Exception):
    """Base class; `errors` names the fields at fault, as [{"field", "message"}]."""

    message = "The request cannot be done."

    def __init__(self, message: str | None = None, *, errors: list[dict[str, str]] | None = None) -> None:
        self.message = message or self.message
        self.errors = errors
        super().__init__(self.message)


class InvalidCredentials(AccountError):
    """Unknown account, wrong password, inactive account, or an account that changed meanwhile: one
    answer for all, so a caller learns nothing about which."""

    message = "The email or password is wrong."


class InvalidRefreshToken(AccountError):
    """Unknown, spent, expired, revoked or too old: one answer, so a thief learns nothing."""

    message = "The refresh token is invalid, expired or already used. Log in again."


class WrongPassword(AccountError):
    """The password confirming a sensitive change is wrong."""

    def __init__(self, field: str) -> None:
        super().__init__(
            "The password is wrong.", errors=[{"field": field, "message": "The password is wrong."}]
        )


class WeakPassword(AccountError):
    """A new password breaks the password policy (password_policy.py)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason, errors=[{"field": field, "message": reason}])


class Taken(AccountError):
    """The username or email belongs to another account (or looks like one that does)."""

    message = "The username or email is already taken."


class AccountGone(AccountError):
    """The account behind a live token was deleted meanwhile."""

    message = "The account of this access token no longer exists."


class UserNotFound(AccountError):
    message = "No user with this id."


class SessionNotFound(AccountError):
    """The account has no live session with this id (another user's counts as none)."""

    message = "This account has no live session with this id."


class NotAllowed(AccountError):
    """The acting user may not make this change (the staff rules in accounts.py)."""

    message = "You may not make this change."


class LastSuperuser(NotAllowed):
    """The change would leave no active superuser to administer the service."""

    message = "This is the last active superuser with staff status: promote another one first."


class HashingOverloaded(AccountError):
    """The password hashing pool would not get to this check within PASSWORD_HASHER_MAX_WAIT."""

    message = "Too many password checks are queued. Retry shortly."


class InvalidLink(AccountError):
    """A mailed link's token that is malformed, tampered with, expired or spent: one answer for all."""

    message = "This link is invalid, expired or already used. Ask for a new one."


class EmailUnverified(AccountError):
    """EMAIL_VERIFICATION is mandatory and the account's address is not verified yet."""

    message = "Verify your email address first: a new link is on its way to it."


class NothingToVerify(AccountError):
    """A verification link was asked for an account whose address is verified, with no change pending."""

    message = "Your email address is already verified and no change is pending."


class InvalidInput(AccountError):
    """A field's value breaks a rule only the account knows (a new email that is the current one)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, errors=[{"field": field, "message": message}])


class InvalidCode(AccountError):
    """A second-factor code (TOTP or recovery) that is wrong, used before, or of a factor not enabled."""

    message = "The code is wrong or was already used."


class InvalidMfaToken(AccountError):
    """The login attempt waiting for its second factor is unknown, expired, finished or outdated."""

    message = "This login attempt has expired or was already used. Log in again."


class MfaAlreadyEnabled(AccountError):
    message = "An authenticator app is already active on this account. Disable it first."


class MfaNotEnabled(AccountError):
    message = "No authenticator app is active on this account."


class MfaNotSetUp(AccountError):
    message = "No authenticator app setup is waiting for confirmation. Start with the setup."


class InvalidPasskey(AccountError):
    """A passkey answer (WebAuthn assertion) that does not log in: unknown credential, wrong
    signature, origin or RP id, missing user verification, a counter that went back, or a challenge
    that is unknown, expired, used, or another session's or login attempt's. One answer for all."""

    message = (
        "The passkey could not be verified, or its challenge expired or was already used. "
        "Ask for new options and try again."
    )


class PasskeyRejected(InvalidPasskey):
    """The same, from a logged-in account (adding a passkey, confirming a change with one): not a
    failed login, so the session is not in question."""


class PasskeyNotFound(AccountError):
    """The account has no passkey with this id (another user's counts as none)."""

    message = "This account has no passkey with this id."


class PasskeyExists(AccountError):
    """The credential is registered already (to this account or another)."""

    message = "This passkey is registered already."


class NoPasskey(AccountError):
    """A passkey was asked for to finish a login, and the account has none."""

    message = "This account has no passkey. Finish the login with another method."
