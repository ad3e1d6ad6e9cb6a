"""The outbox: a mail is a row, written in the transaction of the change that causes it, and sent
after the answer by the sender (outbox.py). Nothing accepted is lost: a row stays until it is sent,
or until the sender gives up on it (loudly: logged, and kept with `failed_at` for the operator).

Most rows are written composed. A row with a `composer` is a request the sender composes when it
takes it, in the sender's transaction: a password reset request is written alike for every address
(the answer must not tell whether an account has it) and only the sender looks the address up.

The text can hold a live link (a reset or verification token): once the mail is sent or given up,
the text and HTML are blanked, so the table keeps who got what when, never a usable link."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Mail(Model):
    id = fields.BigIntField(primary_key=True)
    to = fields.CharField(max_length=254)
    # the name of a composer registered with outbox.py, until the sender has composed the mail
    composer = fields.CharField(max_length=40, null=True)
    data = fields.JSONField(null=True)  # the composer's input (never a secret)
    subject = fields.CharField(max_length=255)
    text = fields.TextField()
    html = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    # not before: the next attempt (backoff after a failure)
    send_after = fields.DatetimeField()
    # a sender that took the mail holds it until then; another may take it after (it crashed)
    claimed_until = fields.DatetimeField(null=True)
    attempts = fields.IntField(default=0)
    # the last failure's kind (an exception's name), never the message (it can hold the address)
    last_error = fields.CharField(max_length=100, null=True)
    sent_at = fields.DatetimeField(null=True)
    failed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "mail_mail"
        indexes = (("sent_at", "failed_at", "send_after"),)  # the sender's look-up of what is due
