"""How a mail leaves: Django's EMAIL_BACKEND names, `console` (standard output, for development) or
`smtp` (aiosmtplib: async, typed, STARTTLS and implicit TLS)."""

from __future__ import annotations

import sys
from email.message import EmailMessage

import aiosmtplib

import settings


def message(to: str, subject: str, text: str, html: str | None) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = settings.DEFAULT_FROM_EMAIL
    mail["To"] = to
    mail["Subject"] = subject
    mail.set_content(text)
    if html:
        mail.add_alternative(html, subtype="html")
    return mail


async def send(mail: EmailMessage) -> None:
    """Hand one message to the configured backend.

    Raises:
        aiosmtplib.SMTPException, OSError: the mail server refused or could not be reached.
    """
    if settings.EMAIL_BACKEND == "console":
        # Headers and the text part, decoded (links whole, not quoted-printable): in development the
        # links are what one is after. Standard output, as Django's console backend, never the log,
        # where no line may hold a token (`manage.py check --deploy` warns about this backend).
        body = mail.get_body(("plain",))
        headers = "".join(f"{name}: {mail[name]}\n" for name in ("From", "To", "Subject"))
        text = body.get_content() if body is not None else ""
        sys.stdout.write(f"{'-' * 30} mail (console backend) {'-' * 30}\n{headers}\n{text}\n{'-' * 84}\n")
        sys.stdout.flush()
        return
    await aiosmtplib.send(
        mail,
        hostname=settings.EMAIL_HOST,
        port=settings.EMAIL_PORT,
        username=settings.EMAIL_HOST_USER or None,
        password=settings.EMAIL_HOST_PASSWORD or None,
        start_tls=settings.EMAIL_USE_TLS,
        use_tls=settings.EMAIL_USE_SSL,
        timeout=settings.EMAIL_TIMEOUT,
    )
