"""Password reset: a link mailed to the account's stored address, then a new password through it.

The request must answer alike, in body and in time, whether or not an account has the address. So it
looks nothing up: it queues one outbox row for any address (outbox.request) and answers 202; the
mail sender composes it (`_compose`, below), in its own transaction, after the answer: only then is
the address looked up, the event recorded and the link made, or the row dropped when no active
account has the address. Unlike Django's PasswordResetForm, an account without a usable password
gets its link too: the Django import gives one to people whose old hash cannot be verified here,
and tells them to reset.

The link (links.py, Django's PasswordResetTokenGenerator design) covers the password hash, last_login,
email and is_active: using it, a later password change or login spends it, and it expires
PASSWORD_RESET_TIMEOUT after the request. Using it sets the password, ends every session, logs
nobody in, and counts as a proof of the address (the link was mailed to it).
"""

from __future__ import annotations

from datetime import datetime

from apps.mail import outbox
from apps.user import accounts, events, links, mails, password_policy, passwords
from apps.user.clients import Client
from apps.user.exceptions import InvalidLink
from apps.user.models import User, normalize_email

COMPOSER = "password_reset"


async def request_reset(email: str, client: Client) -> None:
    """Queue a reset request for `email`, whoever has it (the sender decides, after the answer)."""
    await outbox.request(
        COMPOSER, normalize_email(email), {"ip_address": client.ip_address, "user_agent": client.user_agent}
    )
    outbox.wake()


@outbox.composer(COMPOSER)
async def _compose(address: str, data: dict, requested_at: datetime) -> outbox.Composed | None:
    user = await User.get_or_none(email=address)
    if user is None or not user.is_active:
        return None
    client = Client(user_agent=data.get("user_agent") or "", ip_address=data.get("ip_address"))
    await events.record(events.PASSWORD_RESET_REQUESTED, user.id, client, at=requested_at)
    return mails.password_reset(user, made_at=int(requested_at.timestamp()))


async def reset_password(token: str, new_password: str, client: Client) -> None:
    """Set a new password through a reset link and end every session of the account.

    Raises:
        InvalidLink: malformed, tampered with, expired, or spent.
        WeakPassword: `new_password` breaks the policy (the link stays usable).
    """
    link = links.parse(token)
    if link is None or not links.fresh(links.RESET, link):
        raise InvalidLink()
    user = await User.get_or_none(id=link.user_id)
    if user is None or not user.is_active or not links.matches(links.RESET, link, user):
        raise InvalidLink()
    await password_policy.validate(
        new_password, field="new_password", username=user.username, email=user.email
    )
    new_hash = await passwords.hash_password(new_password)
    # stored only if the account is still in the state the link covered (a use, login or change
    # that committed during the hashing spent it)
    stored = await accounts.store_password_hash(
        user,
        new_hash,
        client,
        expected={field: getattr(user, field) for field in ("password", "last_login", "email", "is_active")},
        event=events.PASSWORD_RESET,
        also={"email_verified": True},
        also_events=() if user.email_verified else (events.EMAIL_VERIFIED,),
    )
    if stored is None:
        raise InvalidLink()
