"""What the account's mails say (templates/mail/: a text part and an HTML part each) and the links in them.

Links are built from FRONTEND_URL, never from the request: a Host or X-Forwarded-Host header chosen by
an attacker must not put their server in a reset link mailed to somebody else (the "poisoned password
reset" attack). The SPA's two pages take the token from the query string and POST it back:

- {FRONTEND_URL}/verify-email?token=...    -> POST /user/email/verify
- {FRONTEND_URL}/reset-password?token=...  -> POST /user/password/reset/confirm
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import settings
from apps.mail import outbox
from apps.mail.outbox import Composed
from apps.user import links
from apps.user.models import User

VERIFY_PATH = "/verify-email"
RESET_PATH = "/reset-password"
PASSWORD_PAGE = "/settings/password"  # noqa: S105 (a path) - where /.well-known/change-password sends password managers

_TEMPLATES = Path(__file__).parent / "templates" / "mail"


@cache
def _environments() -> tuple[Any, Any]:
    """The text and HTML template environments, made with the first mail: jinja2 is imported then,
    so a worker that mails nothing is spared its ~2 MB (issue 12's RSS bound)."""
    import jinja2

    loader = jinja2.FileSystemLoader(_TEMPLATES)
    # StrictUndefined: a misspelt variable fails the test suite instead of mailing a blank.
    # The text part is not HTML: escaping would mail "&lt;" to a user named "<ann>".
    text = jinja2.Environment(loader=loader, autoescape=False, undefined=jinja2.StrictUndefined)  # noqa: S701
    html = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    return text, html


def _site() -> str:
    return urlsplit(settings.FRONTEND_URL).netloc


def _duration(seconds: int) -> str:
    """'3 days', '1 hour', '90 seconds': how long a link works, in a mail's words."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _compose(template: str, to: str, subject: str, **context: object) -> Composed:
    context = {"site": _site(), "subject": subject, **context}
    text, html = _environments()
    return Composed(
        to=to,
        subject=subject,
        text=text.get_template(f"{template}.txt").render(context).strip() + "\n",
        html=html.get_template(f"{template}.html").render(context),
    )


def _link(path: str, token: str) -> str:
    return f"{settings.FRONTEND_URL}{path}?token={quote(token, safe='')}"


def verification(user: User) -> Composed:
    """A verification link for the pending new address if there is one, else for the account's own."""
    address = user.pending_email or user.email
    return _compose(
        "verify_email",
        address,
        "Confirm your new email address" if user.pending_email else "Confirm your email address",
        username=user.username,
        address=address,
        change=user.pending_email is not None,
        link=_link(VERIFY_PATH, links.make(links.VERIFY, user)),
        valid_for=_duration(settings.EMAIL_VERIFICATION_TIMEOUT),
    )


def password_reset(user: User, *, made_at: int) -> Composed:
    """A reset link to the stored address; it expires PASSWORD_RESET_TIMEOUT after `made_at` (the request)."""
    return _compose(
        "password_reset",
        user.email,
        "Reset your password",
        username=user.username,
        link=_link(RESET_PATH, links.make(links.RESET, user, made_at=made_at)),
        valid_for=_duration(settings.PASSWORD_RESET_TIMEOUT),
    )


def email_change_requested(user: User, new_address: str) -> Composed:
    """The notice to the current address: no link, only what was asked and what to do if it was not you."""
    return _compose(
        "email_change_requested",
        user.email,
        "A change of your email address was requested",
        username=user.username,
        address=user.email,
        new_address=new_address,
        password_page=settings.FRONTEND_URL + PASSWORD_PAGE,
    )


def email_changed(user: User, old_address: str) -> Composed:
    """The notice to the address an account just left."""
    return _compose(
        "email_changed",
        old_address,
        "Your email address was changed",
        username=user.username,
        address=old_address,
        new_address=user.email,
    )


async def queue(mail: Composed) -> None:
    """Into the outbox, in the caller's transaction."""
    await outbox.queue(mail.to, mail.subject, mail.text, mail.html)
