"""Passkeys (WebAuthn): adding one to an account, and logging in with one, as the second factor after
the password or alone (passwordless). Verification is Duo's py_webauthn; this module owns the rules
around it.

Challenges. Every ceremony starts with options holding a fresh 32-byte challenge, stored as its
SHA-256 (`WebAuthnChallenge`) with what asked for it: registering (the account and its session),
confirming a change (the same), a second factor (the account and the login attempt, mfa.attempt_of)
or a passwordless login (nothing: anyone may ask). The answer's clientDataJSON names the challenge
it signed, so the row is found by that digest, and spent by one DELETE that also matches the purpose,
the binding and the expiry (MFA_TIMEOUT): of two uses of one challenge, on any worker or host, one
deletes the row and the other finds none. A challenge is spent before the answer is verified, so a
failed answer burns it too. A new challenge replaces the one of the same session or login attempt and
purpose (each has one at a time); expired rows are deleted whenever a challenge is made.

Answers. The origin must be one of WEBAUTHN_ORIGINS, not in a cross-origin frame, and the
authenticator data must carry the SHA-256 of WEBAUTHN_RP_ID and user presence; user verification (a
PIN, a fingerprint) is required wherever the passkey is the only factor: a passwordless login and
confirming a change in place of a password. Registration asks for a discoverable credential
(residentKey required), so every passkey can also log in without a password, and "none" attestation:
which make of authenticator it is does not matter here.

Sign counter. An authenticator that keeps a counter reports a larger one at each use; a counter that
did not move forward (when either is non-zero) means a copy of the key is in use elsewhere, and the
answer is refused. The new count is stored by an UPDATE conditioned on the count read, so of two
answers verified at once against one count, one is accepted.

User handle. The `user.id` an authenticator stores with a discoverable passkey, and returns at a
passwordless login, is a SHA-256 of the account's id under a fixed label: opaque, never the email or
the username, and stable across SECRET_KEY rotations (an HMAC under SECRET_KEY would orphan every
passwordless login once the key left SECRET_KEY_FALLBACKS). The id it hides is no secret: every token
response carries it.

Nothing here logs or returns a credential, a signature or a challenge: refusals are logged by the
stage that refused and the exception's class name only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

import settings
from apps.core.throttle import throttle
from apps.mail import outbox
from apps.user import accounts, events, mails, mfa, sessions, throttles
from apps.user.clients import Client
from apps.user.exceptions import (
    EmailUnverified,
    InvalidCredentials,
    InvalidInput,
    InvalidPasskey,
    NoPasskey,
    PasskeyExists,
    PasskeyNotFound,
    PasskeyRejected,
)
from apps.user.models import Passkey, User, WebAuthnChallenge

logger = logging.getLogger("apps.user.passkeys")

# What a challenge was made for (WebAuthnChallenge.purpose).
REGISTER = "register"
REAUTHENTICATE = "reauthenticate"
SECOND_FACTOR = "second-factor"
LOGIN = "login"

CHALLENGE_BYTES = 32  # WebAuthn asks for at least 16 random bytes
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn's limit; the column holds its base64url
_TRANSPORTS = {transport.value for transport in AuthenticatorTransport}
_USER_HANDLE_LABEL = b"authservice.webauthn-user-handle\x00"


def _now() -> datetime:
    return datetime.now(UTC)


def user_handle(user_id: int) -> bytes:
    """The opaque, stable `user.id` of an account's passkeys (the module docstring says why so)."""
    return hashlib.sha256(_USER_HANDLE_LABEL + str(user_id).encode()).digest()


def _digest(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def _timeout_ms() -> int:
    return settings.MFA_TIMEOUT * 1000


def _options(options: Any) -> dict[str, Any]:
    """py_webauthn's options as the JSON object the browser's parse*OptionsFromJSON() takes."""
    return json.loads(options_to_json(options))


# --- challenges -----------------------------------------------------------------------------------


async def _new_challenge(
    purpose: str, *, user_id: int | None = None, session_id: str | None = None, attempt: str | None = None
) -> bytes:
    """A fresh challenge, stored (as its digest) with what it is for; it replaces the one of the same
    session or login attempt and purpose, and the expired ones go."""
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    now = _now()
    await WebAuthnChallenge.filter(expires_at__lte=now).delete()
    async with in_transaction():
        if session_id is not None:
            await WebAuthnChallenge.filter(purpose=purpose, session_id=session_id).delete()
        elif attempt is not None:
            await WebAuthnChallenge.filter(purpose=purpose, attempt=attempt).delete()
        await WebAuthnChallenge.create(
            digest=_digest(challenge),
            purpose=purpose,
            user_id=user_id,
            session_id=session_id,
            attempt=attempt,
            expires_at=now + timedelta(seconds=settings.MFA_TIMEOUT),
        )
    return challenge


class _Refused(Exception):
    """Why an answer is refused, for the log (never a value from it); `user_id` is the account whose
    passkey it named, when known. Callers turn it into the exception their flow answers with."""

    def __init__(self, stage: str, user_id: int | None = None, cause: BaseException | None = None) -> None:
        super().__init__(stage)
        self.stage, self.user_id, self.cause = stage, user_id, cause


def _log_refusal(flow: str, refused: _Refused) -> None:
    cause = f" ({type(refused.cause).__name__})" if refused.cause is not None else ""
    logger.info("passkey %s refused at %s%s", flow, refused.stage, cause)


async def _spend_challenge(client_data_json: bytes, purpose: str, **binding: Any) -> bytes:
    """The challenge the answer signed, if it is live, made for `purpose` and bound as `binding`
    says; spent now, by the one DELETE that decides between two uses.

    Raises:
        _Refused: the clientDataJSON is malformed or cross-origin, or no such challenge is live.
    """
    try:
        client_data = parse_client_data_json(client_data_json)
    except Exception as exc:  # py_webauthn raises its own errors, and binascii's and json's
        raise _Refused("client data", cause=exc) from None
    if client_data.cross_origin:
        raise _Refused("cross-origin frame")
    spent = await WebAuthnChallenge.filter(
        digest=_digest(client_data.challenge), purpose=purpose, expires_at__gt=_now(), **binding
    ).delete()
    if not spent:
        raise _Refused("challenge")
    return client_data.challenge


# --- registration ---------------------------------------------------------------------------------


def _descriptors(rows: list[tuple[str, str]]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(credential_id),
            transports=[AuthenticatorTransport(t) for t in transports.split(",") if t in _TRANSPORTS] or None,
        )
        for credential_id, transports in rows
    ]


async def _credentials_of(user_id: int) -> list[PublicKeyCredentialDescriptor]:
    rows = await Passkey.filter(user_id=user_id).order_by("id").values_list("credential_id", "transports")
    return _descriptors(rows)


async def registration_options(user: User, session_id: str) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptions (JSON) for a new passkey of `user`, from this session only."""
    challenge = await _new_challenge(REGISTER, user_id=user.id, session_id=session_id)
    options = generate_registration_options(
        rp_id=settings.WEBAUTHN_RP_ID,
        rp_name=settings.SITE_NAME,
        user_id=user_handle(user.id),
        user_name=user.email,
        user_display_name=user.username,
        challenge=challenge,
        timeout=_timeout_ms(),
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=await _credentials_of(user.id),
    )
    return _options(options)


async def add(user: User, session_id: str, credential: dict[str, Any], name: str, client: Client) -> Passkey:
    """Verify the browser's answer to registration_options() and keep the passkey.

    Raises:
        PasskeyRejected: malformed, not for this RP or origin, or its challenge is not a live one of
            this session's.
        PasskeyExists: the credential is registered already.
    """
    try:
        try:
            parsed = parse_registration_credential_json(credential)
        except Exception as exc:
            raise _Refused("credential", cause=exc) from None
        challenge = await _spend_challenge(
            parsed.response.client_data_json, REGISTER, user_id=user.id, session_id=session_id
        )
        try:
            verified = verify_registration_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=settings.WEBAUTHN_RP_ID,
                expected_origin=settings.WEBAUTHN_ORIGINS,
            )
        except Exception as exc:
            raise _Refused("attestation", cause=exc) from None
        if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
            raise _Refused("credential id length")
    except _Refused as refused:
        _log_refusal("registration", refused)
        raise PasskeyRejected() from None
    transports = [t.value for t in parsed.response.transports or ()]
    try:
        async with in_transaction():
            passkey = await Passkey.create(
                user_id=user.id,
                credential_id=bytes_to_base64url(verified.credential_id),
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                transports=",".join(dict.fromkeys(transports))[:200],
                aaguid=verified.aaguid,
                backed_up=verified.credential_backed_up,
                name=name,
                created_at=_now(),
            )
            await events.record(events.PASSKEY_ADDED, user.id, client)
    except IntegrityError:
        raise PasskeyExists() from None
    return passkey


# --- the account's passkeys -----------------------------------------------------------------------


async def list_of(user_id: int) -> list[Passkey]:
    """The account's passkeys, newest first."""
    return await Passkey.filter(user_id=user_id).order_by("-created_at", "-id")


# BigIntField: a larger number names nobody and must not reach the SQL.
MAX_PASSKEY_ID = 2**63 - 1


async def _own(user_id: int, passkey_id: int) -> Passkey:
    passkey = None
    if 0 < passkey_id <= MAX_PASSKEY_ID:
        passkey = await Passkey.get_or_none(id=passkey_id, user_id=user_id)
    if passkey is None:
        raise PasskeyNotFound()
    return passkey


async def rename(user: User, passkey_id: int, name: str, client: Client) -> Passkey:
    """Raises:
    PasskeyNotFound: the account has no such passkey.
    """
    passkey = await _own(user.id, passkey_id)
    async with in_transaction():
        if not await Passkey.filter(id=passkey.id, user_id=user.id).update(name=name):
            raise PasskeyNotFound()  # removed meanwhile
        await events.record(events.PASSKEY_RENAMED, user.id, client)
    passkey.name = name
    return passkey


async def remove(user: User, passkey_id: int, client: Client, confirmation: accounts.Confirmation) -> None:
    """Remove one of the account's passkeys, confirmed by the owner (accounts.confirm_owner: the
    password, or a fresh passkey answer for an account without a usable password).

    Raises:
        PasskeyNotFound: the account has no such passkey (another account's included).
        WrongPassword, InvalidInput, PasskeyRejected: see accounts.confirm_owner.
    """
    passkey = await _own(user.id, passkey_id)
    await accounts.confirm_owner(user, confirmation)
    async with in_transaction():
        if not await Passkey.filter(id=passkey.id, user_id=user.id).delete():
            raise PasskeyNotFound()  # removed meanwhile
        await events.record(events.PASSKEY_REMOVED, user.id, client)


# --- answers to request options (assertions) ------------------------------------------------------


async def _request_options(
    challenge: bytes, uv: UserVerificationRequirement, allow: list[PublicKeyCredentialDescriptor]
) -> dict[str, Any]:
    return _options(
        generate_authentication_options(
            rp_id=settings.WEBAUTHN_RP_ID,
            challenge=challenge,
            timeout=_timeout_ms(),
            allow_credentials=allow,
            user_verification=uv,
        )
    )


async def _check_assertion(
    credential: dict[str, Any],
    purpose: str,
    *,
    binding: dict[str, Any],
    user_id: int | None,
    require_user_verification: bool,
) -> Passkey:
    """The passkey that signed this answer, if the answer is good: its challenge live and bound as
    `binding` says (and now spent), the passkey registered (to `user_id`, if given), origin, RP id,
    presence (and verification) right, the signature the passkey's, the counter moved forward. The
    passkey's counter and last use are stored.

    Raises:
        _Refused: any of it is not so.
    """
    try:
        parsed: AuthenticationCredential = parse_authentication_credential_json(credential)
    except Exception as exc:
        raise _Refused("credential", cause=exc) from None
    challenge = await _spend_challenge(parsed.response.client_data_json, purpose, **binding)
    credential_id = bytes_to_base64url(parsed.raw_id)
    if len(parsed.raw_id) > MAX_CREDENTIAL_ID_BYTES:
        raise _Refused("credential id length")
    found = Passkey.filter(credential_id=credential_id)
    if user_id is not None:
        found = found.filter(user_id=user_id)
    passkey = await found.first()
    if passkey is None:
        raise _Refused("unknown credential")
    # A discoverable passkey returns the handle it was made with: it must be this account's. Without
    # one (a second factor from a list of allowed credentials), the credential id alone names it.
    handle = parsed.response.user_handle
    if handle is None and user_id is None:
        raise _Refused("no user handle", passkey.user_id)
    if handle is not None and not hmac.compare_digest(handle, user_handle(passkey.user_id)):
        raise _Refused("user handle", passkey.user_id)
    try:
        # The counter is checked below, after the signature: a forged answer says nothing about clones.
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=settings.WEBAUTHN_RP_ID,
            expected_origin=settings.WEBAUTHN_ORIGINS,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=0,
            require_user_verification=require_user_verification,
        )
    except Exception as exc:
        raise _Refused("assertion", passkey.user_id, exc) from None
    new_count = verified.new_sign_count
    if (new_count or passkey.sign_count) and new_count <= passkey.sign_count:
        logger.warning(
            "passkey %s of user %s: its sign count did not move forward (a cloned authenticator, or a "
            "replayed answer)",
            passkey.id,
            passkey.user_id,
        )
        raise _Refused("sign count", passkey.user_id)
    if not await _record_use(passkey, new_count, backed_up=verified.credential_backed_up):
        raise _Refused("sign count race", passkey.user_id)
    return passkey


async def _record_use(passkey: Passkey, new_count: int, *, backed_up: bool) -> bool:
    """Store an accepted answer's count and time, if the stored count is still the one it was
    checked against: False if another answer moved it meanwhile (or the passkey went)."""
    used = await Passkey.filter(id=passkey.id, sign_count=passkey.sign_count).update(
        sign_count=new_count, last_used_at=_now(), backed_up=backed_up
    )
    return bool(used)


# --- confirming a change with a passkey (accounts without a password) -----------------------------


async def reauthentication_options(user: User, session_id: str) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptions (JSON) to confirm a change with one of the account's
    passkeys, in place of the password; user verification required.

    Raises:
        NoPasskey: the account has none.
    """
    allow = await _credentials_of(user.id)
    if not allow:
        raise NoPasskey()
    challenge = await _new_challenge(REAUTHENTICATE, user_id=user.id, session_id=session_id)
    return await _request_options(challenge, UserVerificationRequirement.REQUIRED, allow)


async def confirm_with_passkey(user: User, session_id: str, credential: dict[str, Any]) -> None:
    """A fresh, user-verified answer of one of the account's passkeys, to reauthentication_options()
    of this session, confirms a sensitive change of an account that has no usable password (Django's
    unusable password: made by the staff or imported without one). An account with a password
    confirms with it.

    Raises:
        InvalidInput: the account has a usable password (the field `passkey` is not for it).
        PasskeyRejected: the answer is not such an answer.
    """
    if user.has_usable_password:
        raise InvalidInput("passkey", "This account has a password: confirm the change with it.")
    try:
        await _check_assertion(
            credential,
            REAUTHENTICATE,
            binding={"user_id": user.id, "session_id": session_id},
            user_id=user.id,
            require_user_verification=True,
        )
    except _Refused as refused:
        _log_refusal("confirmation", refused)
        raise PasskeyRejected() from None


# --- the second factor ----------------------------------------------------------------------------


async def second_factor_options(mfa_token: str) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptions (JSON) to finish the login attempt `mfa_token` with one of
    the account's passkeys.

    Raises:
        InvalidMfaToken: see mfa.user_of_attempt.
        NoPasskey: the account has none.
    """
    user = await mfa.user_of_attempt(mfa_token)
    allow = await _credentials_of(user.id)
    if not allow:
        raise NoPasskey()
    challenge = await _new_challenge(SECOND_FACTOR, user_id=user.id, attempt=mfa.attempt_of(mfa_token))
    return await _request_options(challenge, UserVerificationRequirement.PREFERRED, allow)


async def finish_second_factor(
    mfa_token: str, credential: dict[str, Any], client: Client
) -> sessions.IssuedTokens:
    """Finish a login whose password was right with a passkey's answer to second_factor_options() of
    the same attempt. Counts like a code: against THROTTLE_MFA for the attempt, and a wrong answer
    against the account from this client IP across attempts (throttles.second_factor_failures).

    Raises:
        InvalidMfaToken: see mfa.user_of_attempt; or another step finished this login first.
        Throttled: past THROTTLE_MFA for this login attempt, or past THROTTLE_LOGIN_ACCOUNT's wrong
            second factors for the account from this IP.
        InvalidPasskey: the answer is not good (a second try needs new options).
    """
    user = await mfa.user_of_attempt(mfa_token)
    attempt = mfa.attempt_of(mfa_token)
    await throttles.mfa_attempt(attempt, client)
    async with throttles.second_factor_failures(user.id, client):
        try:
            await _check_assertion(
                credential,
                SECOND_FACTOR,
                binding={"user_id": user.id, "attempt": attempt},
                user_id=user.id,
                require_user_verification=False,  # the password was the other factor
            )
        except _Refused as refused:
            _log_refusal("second factor", refused)
            events.record_soon(events.MFA_FAILED, user.id, client)
            raise InvalidPasskey() from None
    return await mfa.open_session(user, client)


# --- passwordless login ---------------------------------------------------------------------------


async def login_options(client: Client) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptions (JSON) for a passwordless login: no account named (the
    browser offers the discoverable passkeys it holds for the RP), user verification required.
    Anyone may ask, so each request counts against THROTTLE_LOGIN_IP like a login.

    Raises:
        Throttled: past THROTTLE_LOGIN_IP.
    """
    await throttle().hit(settings.THROTTLE_LOGIN_IP, "login-ip", client.ip_address or "unknown")
    challenge = await _new_challenge(LOGIN)
    return await _request_options(challenge, UserVerificationRequirement.REQUIRED, [])


async def login(credential: dict[str, Any], client: Client) -> sessions.IssuedTokens:
    """Log in with a discoverable passkey alone: a user-verified answer to login_options(), whose
    user handle is its account's. The passkey is possession and the verification (PIN, biometrics)
    is the second factor: no other second factor is asked. A failure with a known passkey goes into
    its account's history (login_failed).

    Raises:
        InvalidPasskey: the answer is not good, or the account is inactive or changed meanwhile.
        EmailUnverified: EMAIL_VERIFICATION mandatory and the address is not verified (a new link
            is mailed, as a password login does).
    """
    try:
        passkey = await _check_assertion(
            credential,
            LOGIN,
            binding={"user_id__isnull": True, "session_id__isnull": True, "attempt__isnull": True},
            user_id=None,
            require_user_verification=True,
        )
    except _Refused as refused:
        _log_refusal("login", refused)
        if refused.user_id is not None:
            events.record_soon(events.LOGIN_FAILED, refused.user_id, client)
        raise InvalidPasskey() from None
    user = await User.get_or_none(id=passkey.user_id)
    if user is None or not user.is_active:
        events.record_soon(events.LOGIN_FAILED, passkey.user_id, client)
        raise InvalidPasskey()
    if settings.EMAIL_VERIFICATION == "mandatory" and not user.email_verified:
        await mails.queue(mails.verification(user))
        outbox.wake()
        raise EmailUnverified()
    try:
        # the account as just read: a password change or deactivation committed since wins
        return await sessions.start(user, client, checked_password=user.password)
    except InvalidCredentials:
        raise InvalidPasskey() from None
