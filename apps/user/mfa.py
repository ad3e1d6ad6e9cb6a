"""Second factors: TOTP (an authenticator app) with recovery codes, and the login that needs one.

TOTP with pyotp: a 160-bit secret, sealed at rest (sealing.py), shown once at setup as a secret, an
otpauth URI and a QR code (SVG, segno); active once a code confirms it. A code is accepted within one
30-second step either side of now, and once: the step it matched is stored by one conditional UPDATE
(`last_step < step`), so a code replayed on any worker or host, or a code older than the last one
used, fails. Recovery codes: ten, shown once, stored as HMAC-SHA256 digests under a key derived from
SECRET_KEY (or a fallback: rotation keeps them working), each spent by one conditional UPDATE.

Login: an account with a second factor (a confirmed TOTP, or a passkey) gets no tokens for its
password but an `mfa_token` (links.py's construction: the user id, the time, an HMAC over the
password hash, last_login and is_active; 5 minutes), which is not a JWT and so never passes for an
access token. `finish_login` checks it, counts the attempt against THROTTLE_MFA (per login attempt),
checks the factor and opens the session on the condition that last_login is still what the token
covered: the login spends its token, and of two steps racing one wins. A password reset changes none
of this: the next login asks for the second factor again.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pyotp
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, RawSQL
from tortoise.transactions import in_transaction

import settings
from apps.user import accounts, events, links, sealing, sessions, throttles
from apps.user.clients import Client
from apps.user.exceptions import (
    InvalidCode,
    InvalidCredentials,
    InvalidMfaToken,
    MfaAlreadyEnabled,
    MfaNotEnabled,
    MfaNotSetUp,
)
from apps.user.models import Passkey, RecoveryCode, TOTPDevice, User

logger = logging.getLogger("apps.user.mfa")

SEALED_SECRET = "totp-secret"  # noqa: S105 (the sealing purpose, not a secret)
RECOVERY_CODES = 10
STEP_SECONDS = 30  # RFC 6238's default, what every authenticator app uses
DIGITS = 6
VALID_STEPS = (-1, 0, 1)  # a code of the step before or after now is accepted too (clock drift)
# 10 characters of 32 (50 bits), shown as xxxxx-xxxxx; Crockford's alphabet: no 0/O or 1/I/L mix-ups
_RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


clock = time.time  # what "now" is for TOTP steps; tests move it instead of waiting 30 s


def _now() -> datetime:
    return datetime.now(UTC)


# --- TOTP -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TOTPSetup:
    secret: str
    otpauth_uri: str
    qr_svg: str


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)


def matching_step(secret: str, code: str, *, now: float | None = None) -> int | None:
    """The time step whose code `code` is, within VALID_STEPS of now; None if none."""
    code = code.strip().replace(" ", "")
    if not (len(code) == DIGITS and code.isascii() and code.isdigit()):
        return None
    totp = _totp(secret)
    current = int((clock() if now is None else now) // STEP_SECONDS)
    found = None
    for offset in VALID_STEPS:  # compare with every candidate: no early exit to time
        step = current + offset
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            found = step
    return found


async def _spend_totp_code(user_id: int, code: str, *, confirmed: bool = True) -> bool:
    """Accept `code` for the account's TOTP once: True if it matched a step later than any used."""
    device = await TOTPDevice.get_or_none(user_id=user_id, confirmed_at__isnull=not confirmed)
    if device is None:
        return False
    try:
        secret = sealing.open_sealed(SEALED_SECRET, device.secret)
    except sealing.Unreadable:
        # Sealed under a SECRET_KEY that is no longer configured (nor in SECRET_KEY_FALLBACKS): no
        # code can match (nor can recovery codes, digested under that key). The staff's reset
        # (manage.py reset_mfa, DELETE /admin/users/{id}/mfa) lets the owner in with the password.
        logger.error("the authenticator app of user %s cannot be read: its SECRET_KEY is gone", user_id)
        return False
    step = matching_step(secret, code)
    if step is None:
        return False
    # The one write that decides, on every worker and host: a step not later than the last one used
    # (a replay, or an older code) matches no row.
    spent = await TOTPDevice.filter(
        Q(last_step__isnull=True) | Q(last_step__lt=step), user_id=user_id
    ).update(last_step=step)
    return bool(spent)


async def totp_enabled(user_id: int) -> bool:
    return await TOTPDevice.filter(user_id=user_id, confirmed_at__isnull=False).exists()


async def setup_totp(user: User, confirmation: accounts.Confirmation) -> TOTPSetup:
    """Start (or start over) setting up an authenticator app; active once confirm_totp() has a code.

    Raises:
        WrongPassword, PasskeyRejected: not confirmed by the owner (accounts.confirm_owner).
        MfaAlreadyEnabled: an authenticator app is already active (disable it first).
    """
    await accounts.confirm_owner(user, confirmation)
    secret = pyotp.random_base32(32)  # 160 bits, RFC 4226's recommendation
    async with in_transaction():
        await TOTPDevice.filter(user_id=user.id, confirmed_at__isnull=True).delete()
        try:
            await TOTPDevice.create(
                user_id=user.id, secret=sealing.seal(SEALED_SECRET, secret), created_at=_now()
            )
        except IntegrityError:
            raise MfaAlreadyEnabled() from None
    uri = _totp(secret).provisioning_uri(name=user.email, issuer_name=settings.SITE_NAME)
    # a whole SVG document (with its xmlns), so that a page can show it as an <img> from a data: URL
    # under a strict CSP instead of injecting markup
    svg = io.BytesIO()
    import segno  # only when a QR code is drawn (TOTP setup): not in every worker's memory

    segno.make(uri, error="m").save(svg, kind="svg", xmldecl=False, scale=4)
    return TOTPSetup(secret=secret, otpauth_uri=uri, qr_svg=svg.getvalue().decode())


async def confirm_totp(user: User, code: str, client: Client) -> list[str]:
    """Activate the authenticator app set up last with one of its codes; returns the recovery codes.

    Raises:
        MfaNotSetUp: no setup is waiting (none started, or already confirmed).
        Throttled: too many wrong codes for this account (THROTTLE_MFA).
        InvalidCode: the code is not the app's.
    """
    if not await TOTPDevice.filter(user_id=user.id, confirmed_at__isnull=True).exists():
        raise MfaNotSetUp()
    await throttles.mfa_account(user.id)
    if not await _spend_totp_code(user.id, code, confirmed=False):
        raise InvalidCode()
    async with in_transaction():
        if not await TOTPDevice.filter(user_id=user.id, confirmed_at__isnull=True).update(
            confirmed_at=_now()
        ):
            raise MfaNotSetUp()  # a concurrent confirmation won
        codes = await _replace_recovery_codes(user.id)
        await events.record(events.MFA_ENABLED, user.id, client)
    return codes


async def _check_code_or_recovery_code(user: User, code: str) -> None:
    """A current TOTP code, or (the app is lost) an unused recovery code, which it spends.

    Raises:
        Throttled: too many wrong codes for this account.
        InvalidCode: neither.
    """
    await throttles.mfa_account(user.id)
    if not (await _spend_totp_code(user.id, code) or await _spend_recovery_code(user.id, code)):
        raise InvalidCode()


async def disable_totp(user: User, confirmation: accounts.Confirmation, code: str, client: Client) -> None:
    """Turn the authenticator app off (and its recovery codes with it).

    Raises:
        WrongPassword, MfaNotEnabled, Throttled, InvalidCode.
    """
    await accounts.confirm_owner(user, confirmation)
    if not await totp_enabled(user.id):
        raise MfaNotEnabled()
    await _check_code_or_recovery_code(user, code)
    async with in_transaction():
        if await TOTPDevice.filter(user_id=user.id).delete():  # a concurrent disable may have won
            await RecoveryCode.filter(user_id=user.id).delete()
            await events.record(events.MFA_DISABLED, user.id, client)


async def remove_every_factor(user_id: int, client: Client | None, *, actor_id: int | None) -> int:
    """Remove the authenticator app, the recovery codes and every passkey, inside the caller's
    transaction (accounts.reset_second_factors, the staff's way back in for a user who lost them),
    each removal in the history with its actor; returns how many factors went."""
    app = await TOTPDevice.filter(user_id=user_id).delete()
    await RecoveryCode.filter(user_id=user_id).delete()
    passkeys = await Passkey.filter(user_id=user_id).delete()
    if app:
        await events.record(events.MFA_DISABLED, user_id, client, actor_id=actor_id)
    if passkeys:
        await events.record(events.PASSKEY_REMOVED, user_id, client, actor_id=actor_id)
    return app + passkeys


# --- recovery codes -------------------------------------------------------------------------------


def _recovery_digest(code: str, key: str) -> str:
    derived = hashlib.sha256(f"authservice.recovery-code\x00{key}".encode()).digest()
    return hmac.new(derived, code.encode(), hashlib.sha256).hexdigest()


def _normalized(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


async def _replace_recovery_codes(user_id: int) -> list[str]:
    """A new set, the old one gone; inside the caller's transaction."""
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    await RecoveryCode.filter(user_id=user_id).delete()
    await RecoveryCode.bulk_create(
        [
            RecoveryCode(user_id=user_id, digest=_recovery_digest(_normalized(c), settings.SECRET_KEY))
            for c in codes
        ]
    )
    return codes


async def _spend_recovery_code(user_id: int, code: str) -> bool:
    code = _normalized(code)
    if len(code) != 10 or not code.isascii():
        return False
    digests = [_recovery_digest(code, key) for key in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)]
    spent = await RecoveryCode.filter(user_id=user_id, digest__in=digests, used_at__isnull=True).update(
        used_at=_now()
    )
    return bool(spent)


async def regenerate_recovery_codes(
    user: User, confirmation: accounts.Confirmation, code: str, client: Client
) -> list[str]:
    """A new set of recovery codes; the old set stops working.

    Raises:
        WrongPassword, MfaNotEnabled, Throttled, InvalidCode.
    """
    await accounts.confirm_owner(user, confirmation)
    if not await totp_enabled(user.id):
        raise MfaNotEnabled()
    await _check_code_or_recovery_code(user, code)
    async with in_transaction():
        codes = await _replace_recovery_codes(user.id)
        await events.record(events.RECOVERY_CODES_REGENERATED, user.id, client)
    return codes


# --- the login's second step ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecondFactorRequired:
    """The password was right; the login waits for a second factor."""

    mfa_token: str
    methods: list[str]


# Which second factors an account has, read with the account by the login's own lookup
# (accounts.authenticate annotates it): a login asks one query before the hash, not three. On SQLite,
# whose one connection every request shares, each query is a turn of that connection.
SECOND_FACTORS = {
    "totp_enabled": RawSQL(
        'EXISTS (SELECT 1 FROM user_totp_device WHERE user_totp_device.user_id = "user_user"."id"'
        " AND user_totp_device.confirmed_at IS NOT NULL)"
    ),
    "has_passkey": RawSQL(
        'EXISTS (SELECT 1 FROM user_passkey WHERE user_passkey.user_id = "user_user"."id")'
    ),
}


def second_factor_required(user: User) -> SecondFactorRequired | None:
    """The login attempt that waits for a second factor, if the account has one; `user` is read
    with SECOND_FACTORS."""
    methods = ["totp", "recovery_code"] if user.totp_enabled else []
    if user.has_passkey:
        methods.append("passkey")
    if not methods:
        return None
    return SecondFactorRequired(mfa_token=links.make(links.SECOND_FACTOR, user), methods=methods)


def attempt_of(mfa_token: str) -> str:
    """A stable name for one login attempt (its throttle key, a passkey challenge's binding)."""
    return hashlib.sha256(mfa_token.encode()).hexdigest()


async def user_of_attempt(mfa_token: str) -> User:
    """The account a live, unspent mfa_token is for.

    Raises:
        InvalidMfaToken: malformed, expired, spent by a login, or the account changed meanwhile.
    """
    link = links.parse(mfa_token)
    if link is None or not links.fresh(links.SECOND_FACTOR, link):
        raise InvalidMfaToken()
    user = await User.get_or_none(id=link.user_id)
    if user is None or not user.is_active or not links.matches(links.SECOND_FACTOR, link, user):
        raise InvalidMfaToken()
    return user


async def finish_login(
    mfa_token: str, client: Client, *, code: str | None = None, recovery_code: str | None = None
) -> sessions.IssuedTokens:
    """Finish a login with a TOTP code or a recovery code. (With a passkey: passkeys.finish_login.)

    Raises:
        InvalidMfaToken: see user_of_attempt.
        Throttled: past THROTTLE_MFA for this login attempt.
        InvalidCode: the code is wrong, used before, or the factor is not enabled.
    """
    user = await user_of_attempt(mfa_token)
    await throttles.mfa_attempt(attempt_of(mfa_token), client)
    async with throttles.second_factor_failures(user.id, client):
        if code is not None:
            accepted = await _spend_totp_code(user.id, code)
        else:
            accepted = recovery_code is not None and await _spend_recovery_code(user.id, recovery_code)
            if accepted:
                await events.record(events.RECOVERY_CODE_USED, user.id, client)
        if not accepted:
            events.record_soon(events.MFA_FAILED, user.id, client)
            raise InvalidCode()
    return await open_session(user, client)


async def open_session(user: User, client: Client) -> sessions.IssuedTokens:
    """The session of a login whose second factor was just accepted, if the account is still as the
    mfa_token covered it (so the token is spent by this login, and a racing one loses).

    Raises:
        InvalidMfaToken: another step finished this login first, or the account changed.
    """
    try:
        return await sessions.start(user, client, checked_password=user.password, last_login=user.last_login)
    except InvalidCredentials:
        raise InvalidMfaToken() from None
