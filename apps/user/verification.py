"""Proving an address: the verification link, and changing the account's email through one.

An email change is a pending address (`User.pending_email`) until a link mailed to it is used; the
current address gets a notice without a link, at the request and again once the change is made.
The address changes, and is verified, in one conditional UPDATE on the state the link covered
(links.py), so a link counts once, and the unique index on `email` decides, at that moment, between
two accounts confirming the same new address. A password change or reset and a deactivation cancel a
pending change (accounts.py): the notice tells the owner who did not ask for it to change the
password, and that must stop whoever asked.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError

from apps.mail import outbox
from apps.user import accounts, events, links, mails, sessions
from apps.user.clients import Client
from apps.user.exceptions import InvalidInput, InvalidLink, NothingToVerify, Taken, WrongPassword
from apps.user.models import User, normalize_email

_EMAIL_TAKEN = {"field": "email", "message": "An account with this email already exists."}


async def send_link(user: User) -> None:
    """Mail a verification link to the pending new address, else to the account's unverified one.

    Raises:
        NothingToVerify: the address is verified and no change is pending.
    """
    if user.email_verified and user.pending_email is None:
        raise NothingToVerify()
    await mails.queue(mails.verification(user))
    outbox.wake()


async def verify(token: str, client: Client) -> User:
    """Use a verification link: the account's address is verified, or the pending one becomes its
    email (verified). Verifying logs nobody in.

    Raises:
        InvalidLink: malformed, tampered with, expired, or spent (the account moved on since).
        Taken: the pending address became another account's email meanwhile.
    """
    link = links.parse(token)
    if link is None or not links.fresh(links.VERIFY, link):
        raise InvalidLink()
    user = await User.get_or_none(id=link.user_id)
    if user is None or not user.is_active or not links.matches(links.VERIFY, link, user):
        raise InvalidLink()
    # the state the link covered: if another use or change committed since, this matches nothing
    unchanged = User.filter(
        id=user.id,
        email=user.email,
        pending_email=user.pending_email,
        pending_email_at=user.pending_email_at,
        email_verified=user.email_verified,
        is_active=True,
    )
    if user.pending_email is None:
        async with sessions.ending() as end:
            if not await unchanged.update(email_verified=True):
                raise InvalidLink()
            await events.record(events.EMAIL_VERIFIED, user.id, client)
            end.profile_changed(user.id)  # the user object shows email_verified
        user.email_verified = True
        return user
    old_address, user.email = user.email, user.pending_email
    try:
        async with sessions.ending() as end:
            if not await unchanged.update(
                email=user.email, pending_email=None, pending_email_at=None, email_verified=True
            ):
                raise InvalidLink()
            await events.record(events.EMAIL_CHANGED, user.id, client)
            await mails.queue(mails.email_changed(user, old_address))
            end.account_changed(user.id)  # request.user carries the email
    except IntegrityError:
        raise Taken(errors=[_EMAIL_TAKEN]) from None
    outbox.wake()
    user.pending_email, user.pending_email_at, user.email_verified = None, None, True
    return user


async def request_email_change(
    user: User, new_email: str, confirmation: accounts.Confirmation, client: Client
) -> None:
    """Make `new_email` the account's pending address: a link goes to it, a notice to the current one.

    The password first, so that without it nobody learns whether an address has an account.

    Raises:
        WrongPassword: `password` is not the account's (or was changed meanwhile).
        InvalidInput: `new_email` is the account's email already.
        Taken: another account has `new_email`.
    """
    await accounts.confirm_owner(user, confirmation)
    new_email = normalize_email(new_email)
    if new_email == user.email:
        raise InvalidInput("email", "This is already your email address.")
    if await User.filter(email=new_email).exclude(id=user.id).exists():
        raise Taken(errors=[_EMAIL_TAKEN])
    async with sessions.ending() as end:
        asked_at = datetime.now(UTC)
        changed = await User.filter(id=user.id, password=user.password, is_active=True).update(
            pending_email=new_email, pending_email_at=asked_at
        )
        if not changed:
            raise WrongPassword("password")
        end.profile_changed(user.id)  # the user object shows pending_email
        user.pending_email, user.pending_email_at = new_email, asked_at
        await events.record(events.EMAIL_CHANGE_REQUESTED, user.id, client)
        await mails.queue(mails.verification(user))
        await mails.queue(mails.email_change_requested(user, new_email))
    outbox.wake()
