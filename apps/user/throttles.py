"""What the account endpoints throttle, and by which key. The limits are settings (THROTTLE_*); the
counting, in Redis or in this process, is apps/core/throttle.py's.

Keys name a client by its IP (the peer, or what a trusted proxy put in X-Forwarded-For: uvicorn's
FORWARDED_ALLOW_IPS) and an account by what was typed, digested: the same for an address that has an
account and one that has none (a 429 must not tell which), and no address is kept in Redis.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import settings
from apps.core.throttle import throttle
from apps.user.clients import Client


def _ip(client: Client) -> str:
    return client.ip_address or "unknown"


def _digest(identifier: str) -> str:
    return hashlib.sha256(identifier.encode()).hexdigest()[:32]


@asynccontextmanager
async def login_attempt(identifier: str, client: Client) -> AsyncIterator[None]:
    """Count a login attempt against its client IP (THROTTLE_LOGIN_IP) and against the identifier
    from that IP (THROTTLE_LOGIN_ACCOUNT), before the password is checked, so that attempts in flight
    at once are counted too; a login that succeeds clears the latter, which so counts failures.
    Per identifier *and IP*: an attacker who exhausts an account's limit does not lock its owner out
    from anywhere else.

    Raises:
        Throttled: over either limit (the password is not checked).
    """
    limiter, ip, account = throttle(), _ip(client), _digest(identifier)
    await limiter.hit(settings.THROTTLE_LOGIN_IP, "login-ip", ip)
    await limiter.hit(settings.THROTTLE_LOGIN_ACCOUNT, "login-account", account, ip)
    yield
    await limiter.clear(settings.THROTTLE_LOGIN_ACCOUNT, "login-account", account, ip)


async def registration(client: Client) -> None:
    await throttle().hit(settings.THROTTLE_REGISTER_IP, "register-ip", _ip(client))


async def password_reset_request(address: str, client: Client) -> None:
    """Per client IP and per address, whether or not an account has it."""
    limiter = throttle()
    await limiter.hit(settings.THROTTLE_PASSWORD_RESET, "reset-ip", _ip(client))
    await limiter.hit(settings.THROTTLE_PASSWORD_RESET, "reset-address", _digest(address))


async def mail_for_account(user_id: int) -> None:
    """Verification and email-change mails one account can have sent (THROTTLE_PASSWORD_RESET's limit):
    a logged-in user must not be able to make the service mail any address without end."""
    await throttle().hit(settings.THROTTLE_PASSWORD_RESET, "account-mail", str(user_id))


async def mfa_attempt(attempt: str, client: Client) -> None:
    """Second-factor tries of one login attempt (THROTTLE_MFA), counted before the factor is checked:
    whoever knows the password gets a few guesses per login, and logging in again is throttled by
    THROTTLE_LOGIN_*. Per attempt, not per account: the owner, logging in elsewhere, is not locked out."""
    await throttle().hit(settings.THROTTLE_MFA, "mfa-attempt", attempt)


async def mfa_account(user_id: int) -> None:
    """Codes a logged-in account tries (confirming, disabling, new recovery codes): THROTTLE_MFA, so a
    stolen session cannot guess its way to turning the second factor off."""
    await throttle().hit(settings.THROTTLE_MFA, "mfa-account", str(user_id))


@asynccontextmanager
async def second_factor_failures(user_id: int, client: Client) -> AsyncIterator[None]:
    """Wrong second factors for one account from one client IP, across its login attempts
    (THROTTLE_LOGIN_ACCOUNT's limit), cleared by a success: whoever knows the password cannot buy a
    new THROTTLE_MFA budget with every login; the owner, elsewhere, is not locked out."""
    limiter, key = throttle(), (str(user_id), _ip(client))
    await limiter.hit(settings.THROTTLE_LOGIN_ACCOUNT, "mfa-account-ip", *key)
    yield
    await limiter.clear(settings.THROTTLE_LOGIN_ACCOUNT, "mfa-account-ip", *key)
